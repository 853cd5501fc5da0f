"""The pieces of the picker fit together: MeshOperators from partitions feed the DiffusionNet,
and its per-partition outputs stitch back onto the mesh."""

import numpy as np
import torch
import trimesh

from napari_cryolearn.picking.diffusionnet import DiffusionNetPicker, operators_to_torch
from napari_cryolearn.picking.operators import compute_operators
from napari_cryolearn.picking.partitions import partition_mesh, stitch


def test_partitions_operators_network_and_stitching_work_together():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=50.0)
    verts, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    parts = partition_mesh(verts, faces, size=300)
    assert len(parts) > 1
    torch.manual_seed(0)
    net = DiffusionNetPicker(profile_length=16).eval()
    height = verts[:, 2]  # a profile that encodes each vertex's height
    profiles = np.repeat(height[:, None], 16, axis=1).astype(np.float32) / 50.0
    outputs = []
    with torch.no_grad():
        for part in parts:
            ops = compute_operators(verts[part.vertices], part.faces, k=32)
            t = operators_to_torch(ops)
            out = net(torch.from_numpy(profiles[part.vertices]), *t)
            assert out.shape == (part.size,) and torch.isfinite(out).all()
            outputs.append(out.numpy())
    stitched = stitch(len(verts), parts, outputs)
    assert stitched.shape == (len(verts),) and np.isfinite(stitched).all()
    # a vertex in one partition gets that partition's value exactly
    once = np.bincount(np.concatenate([p.vertices for p in parts]), minlength=len(verts)) == 1
    first = parts[0]
    only = once[first.vertices]
    np.testing.assert_allclose(stitched[first.vertices[only]], outputs[0][only], rtol=1e-5)
