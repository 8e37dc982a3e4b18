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
    # one byte a grid point: 0 at 12 nats below the maximum, 255 at it (half a level of rounding)
    assert heat.z.dtype == np.uint8 and (heat.zmin, heat.zmax) == (0, 255)
    levels = (expected - (expected.max() - 12)) * 255 / 12
    assert np.abs(heat.z.astype(float) - levels).max() <= 0.5 + 1e-3
    assert np.allclose(np.array(heat.x, dtype=float), grid.numpy())
    assert np.array_equal(dots.x, paths[-1][:, 0].numpy())  # float32, as the states
    xs = np.array(lines.x, dtype=float)
    assert np.isnan(xs).sum() == 10 and np.allclose(xs[:3], [p[0, 0].item() for p in paths])


def test_particle_figure_draws_a_bounded_subsample():
    model = load_model("tree")
    g = torch.Generator().manual_seed(1)
    paths = [torch.randn(300, 2, generator=g) for _ in range(4)]
    fig = particle_figure(model, paths, sigma=0.5, extent=2.0, resolution=21, max_paths=7, max_particles=100)
    _, lines, dots = fig.data
    assert np.array_equal(dots.y, paths[-1][:100, 1].numpy())  # the first 100 particles
    xs = np.array(lines.x, dtype=float).reshape(7, len(paths) + 1)  # 7 paths, each ended by a gap
    assert np.isnan(xs[:, -1]).all() and np.array_equal(xs[:, :-1].T, torch.stack([p[:7, 0] for p in paths]).numpy())
    assert "(100 of 300 shown)" in fig.layout.title.text
    assert "shown" not in particle_figure(model, paths, sigma=0.5, extent=2.0, resolution=21).layout.title.text
