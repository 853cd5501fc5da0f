"""Training data: the resumable loader and the checks of every patch's arrays."""

import numpy as np
import pytest

from napari_cryolearn.engine.errors import InputError
from napari_cryolearn.segmentation.data import (
    EpochSampler,
    ResumableLoader,
    SegmentationDataset,
    check_sources,
    collate,
)


class _Identity:
    def __call__(self, sample):
        return sample


def _loader(n=11, batch=2):
    rng = np.random.default_rng(0)
    source = [{"image": rng.normal(size=(8, 8, 8)).astype(np.float32),
               "labels": np.full((8, 8, 8), i % 2, np.uint8)} for i in range(n)]
    ds = SegmentationDataset([source], [(0, i) for i in range(n)], _Identity(), seed=3)
    return ResumableLoader(ds, batch_size=batch, sampler=EpochSampler(n, True, seed=3), collate_fn=collate,
                           drop_last=True)


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [b["image"] for b in loader]


def test_loader_resumes_in_the_middle_of_an_epoch():
    whole = _loader()
    assert len(whole) == 5
    reference = _epoch(whole, 2)
    stopped = _loader()
    stopped.sampler.set_epoch(2)
    it = iter(stopped)
    seen = [next(it)["image"] for _ in range(3)]
    state = stopped.state_dict()
    assert state == {"epoch": 2, "batches": 3}
    resumed = _loader()
    resumed.load_state_dict(state)
    assert resumed.sampler.epoch == 2
    rest = _epoch(resumed, 2)  # Lightning sets the same epoch again before iterating
    assert len(rest) == 2 and resumed.state_dict() == {"epoch": 2, "batches": 5}
    assert all((a == b).all() for a, b in zip(seen + rest, reference, strict=True))
    # the next epoch is whole again, and so is one resumed from the end of an epoch
    assert len(_epoch(resumed, 3)) == 5
    after_end = _loader()
    after_end.load_state_dict({"epoch": 2, "batches": 5})
    assert after_end.sampler.epoch == 3 and len(list(after_end)) == 5


def _source(**arrays):
    base = {"image": np.zeros((4, 4, 4), np.float32), "labels": np.ones((4, 4, 4), np.uint8),
            "distances": np.zeros((2, 4, 4, 4), np.float32)}
    base.update(arrays)
    return [dict(base), dict(base), base]


@pytest.mark.parametrize("field, value", [("image", np.inf), ("distances", np.nan), ("distances", -np.inf),
                                          ("labels", np.nan)])
def test_non_finite_values_in_any_array_are_refused(field, value):
    good = _source()
    check_sources([good], ["s.zarr"], 2, 255, need_distances=True)
    bad = np.array(good[2][field], dtype=np.float32)
    bad.flat[5] = value
    broken = _source(**{field: bad})
    broken[0], broken[1] = good[0], good[1]  # only patch 2 is broken
    with pytest.raises(InputError, match=rf"s\.zarr: {field}: patch 2: the {field} holds? NaN or infinite"):
        check_sources([broken], ["s.zarr"], 2, 255, need_distances=True)
