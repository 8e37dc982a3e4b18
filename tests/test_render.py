"""Pictures of the state: pixel mapping and layout of image grids, particles over the density."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stiffviz import load_model
from stiffviz.app.render import image_grid, particle_figure


def test_image_grid_maps_values_and_places_tiles():
    images = torch.stack([torch.full((1, 2, 2), v) for v in (-1.0, 0.0, 1.0, 5.0, -5.0)])
    grid = image_grid(images, columns=3, tile=4, gap=1)
    assert grid.shape == (2 * 5, 3 * 5, 3) and grid.dtype == np.uint8
    tile = lambda k: grid[(k // 3) * 5 : (k // 3) * 5 + 4, (k % 3) * 5 : (k % 3) * 5 + 4]  # noqa: E731
    for k, expected in enumerate((0, 128, 255, 255, 0)):  # [−1, 1] → [0, 255], clipped outside
        assert (tile(k) == expected).all(), k
    assert (grid[:, 4] == 255).all() and (grid[4, :] == 255).all()  # gaps stay white
    assert (tile(5) == 255).all()  # the empty sixth cell


def test_image_grid_rejects_non_images():
    with pytest.raises(ValueError, match="images"):
        image_grid(torch.zeros(4, 2))


def test_particle_figure_draws_the_density_paths_and_particles():
    model = load_model("tree")
    g = torch.Generator().manual_seed(0)
    paths = [torch.randn(10, 2, generator=g) * s for s in (3.0, 1.0, 0.5)]
    fig = particle_figure(model, paths, sigma=0.5, extent=2.0, resolution=21)
    heat, lines, dots = fig.data
    grid = torch.linspace(-2, 2, 21, dtype=torch.float64)  # log p in float64, independently of the float32 view
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    expected = model.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), 0.5).view(21, 21)
    expected = expected.clamp_min(expected.max() - 12).numpy()
    assert np.allclose(np.array(heat.z, dtype=float), expected, rtol=1e-5, atol=1e-3)
    assert np.allclose(np.array(heat.x, dtype=float), grid.numpy())
    assert np.allclose(np.array(dots.x, dtype=float), paths[-1][:, 0].numpy())
    xs = np.array(lines.x, dtype=float)
    assert np.isnan(xs).sum() == 10 and np.allclose(xs[:3], [p[0, 0].item() for p in paths])
