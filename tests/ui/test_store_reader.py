"""Opening patch stores of every kind in napari's reader hook."""

import numpy as np

from napari_cryolearn.io.patch_store import PatchStoreWriter
from napari_cryolearn.ui.io_hooks import read_layers


def test_a_labels_only_store_opens_as_labels_and_points(tmp_path):
    origins = np.array([[0, 0, 0], [0, 0, 8]])
    labels = np.zeros((8, 8, 16), np.uint8)
    labels[2:5, 2:5, 10:13] = 3
    with PatchStoreWriter(tmp_path / "l.zarr", origins, 8, voxel_size=(5, 6, 7), volume_shape=(8, 8, 16),
                          image=False, labels_dtype=np.uint8) as writer:
        for i, (z, y, x) in enumerate(origins):
            writer.write(i, labels=labels[z:z + 8, y:y + 8, x:x + 8])
    layers = read_layers(str(tmp_path / "l.zarr"))
    assert [kind for _, _, kind in layers] == ["labels", "points"]
    np.testing.assert_array_equal(layers[0][0], labels)
    assert layers[0][1]["scale"] == (5.0, 6.0, 7.0)
