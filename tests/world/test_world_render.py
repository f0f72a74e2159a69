import dataclasses

import numpy as np
import pytest

from sail_core.world.grammar import PromptSpec, all_specs
from sail_core.world.layout import (
    CANVAS,
    CANVAS_CENTRE,
    CENTRE_HALF_WIDTH,
    EXTENT_DOWN,
    EXTENT_SIDE,
    EXTENT_UP,
    OBJECT_GAP,
    PALETTE,
    SHAPE_INDEX,
    in_position,
    size_range,
)
from sail_core.world.render import (
    BLUR_SIGMA_RANGE,
    NOISE_STD_RANGE,
    Scene,
    SceneObject,
    render,
    render_batch,
    sample_batch,
    sample_images,
    sample_scene,
    sample_scenes,
)
from tests.world.helpers import scene


def test_sample_batch_is_deterministic_for_a_seed():
    prompts_a, images_a = sample_batch(np.random.default_rng(0), 64)
    prompts_b, images_b = sample_batch(np.random.default_rng(0), 64)
    prompts_c, images_c = sample_batch(np.random.default_rng(1), 64)
    assert prompts_a == prompts_b
    assert np.array_equal(images_a, images_b)
    assert images_a.shape == (64, 16, 16, 3) and images_a.dtype == np.uint8
    assert prompts_a != prompts_c
    assert not np.array_equal(images_a, images_c)


def test_render_is_a_pure_function_of_the_scene_and_batching_does_not_matter():
    specs = list(all_specs()[::97])
    scenes = sample_scenes(specs, np.random.default_rng(5))
    batch = render_batch(scenes)
    assert np.array_equal(render(scenes[3]), batch[3])
    assert np.array_equal(render(scenes[3]), render(scenes[3]))
    assert np.array_equal(render_batch(scenes[2:5]), batch[2:5])
    assert np.array_equal(sample_images(specs, np.random.default_rng(5)), batch)
    assert sample_scene(specs[0], np.random.default_rng(5)) == sample_scenes(specs[:1], np.random.default_rng(5))[0]


def test_different_noise_seeds_give_different_noise():
    base = scene([("circle", "red", 8, 8, 8)], "gray", noise=0.1)
    a = render(base)
    b = render(dataclasses.replace(base, noise_seed=2))
    assert not np.array_equal(a, b)
    assert np.array_equal(a[7:9, 7:9], b[7:9, 7:9])  # the object's interior carries no noise


def _box(obj: SceneObject) -> tuple[float, float, float, float]:
    k = SHAPE_INDEX[obj.shape]
    return (
        obj.x - obj.size * EXTENT_SIDE[k],
        obj.x + obj.size * EXTENT_SIDE[k],
        obj.y - obj.size * EXTENT_UP[k],
        obj.y + obj.size * EXTENT_DOWN[k],
    )


def test_sampled_scenes_honour_every_stated_attribute_of_every_prompt():
    specs = all_specs()
    for spec, sc in zip(specs, sample_scenes(specs, np.random.default_rng(11))):
        assert len(sc.objects) == spec.count
        lo, hi = size_range(spec.size, spec.count)
        for obj in sc.objects:
            assert obj.shape == spec.shape and obj.colour == spec.colour
            assert np.abs(np.subtract(obj.rgb, PALETTE[spec.colour])).max() <= 12
            assert lo <= obj.size <= hi
            x0, x1, y0, y1 = _box(obj)
            assert x0 >= -1e-9 and y0 >= -1e-9 and x1 <= CANVAS + 1e-9 and y1 <= CANVAS + 1e-9
            if spec.position not in (None, "centre"):
                assert in_position(spec.position, obj.x, obj.y), (spec.text(), obj)
        if spec.position == "centre":
            gx = np.mean([o.x for o in sc.objects])
            gy = np.mean([o.y for o in sc.objects])
            assert in_position("centre", gx, gy), spec.text()
        if spec.count == 2:
            a, b = (_box(o) for o in sc.objects)
            gap_x = max(b[0] - a[1], a[0] - b[1])
            gap_y = max(b[2] - a[3], a[2] - b[3])
            assert max(gap_x, gap_y) >= OBJECT_GAP - 1e-9, spec.text()
        if spec.background is not None:
            assert sc.background == spec.background
        assert NOISE_STD_RANGE[0] <= sc.noise_std <= NOISE_STD_RANGE[1]
        assert sc.blur_sigma == 0.0 or BLUR_SIGMA_RANGE[0] <= sc.blur_sigma <= BLUR_SIGMA_RANGE[1]


def test_unsaid_attributes_are_broad():
    scenes = sample_scenes([PromptSpec("red", "circle", 1)] * 600, np.random.default_rng(2))
    sizes = np.array([s.objects[0].size for s in scenes])
    xs = np.array([s.objects[0].x for s in scenes])
    ys = np.array([s.objects[0].y for s in scenes])
    assert sizes.min() < 3.5 and sizes.max() > 9.5
    assert xs.min() < 3 and xs.max() > 13 and ys.min() < 3 and ys.max() > 13
    assert abs(np.mean([abs(x - CANVAS_CENTRE) <= CENTRE_HALF_WIDTH for x in xs]) - 0.25) < 0.1
    assert {s.background for s in scenes} == {"black", "white", "gray"}
    assert abs(np.mean([s.blur_sigma > 0 for s in scenes]) - 0.5) < 0.08
    noise = np.array([s.noise_std for s in scenes])
    assert noise.min() < 0.01 and noise.max() > 0.14


def test_clean_render_has_exact_colours_and_areas():
    # A 6 px square centred on (8, 8) covers pixels 5..10 exactly; no noise, no blur.
    image = render(scene([("square", "red", 8.0, 8.0, 6.0)], "black"))
    inside = np.zeros((16, 16), bool)
    inside[5:11, 5:11] = True
    assert np.all(image[inside] == PALETTE["red"])
    assert np.all(image[~inside] == (15, 15, 15))
    # A circle's anti-aliased coverage integrates to its area.
    image = render(scene([("circle", "blue", 8.3, 7.6, 7.0)], "black")).astype(float)
    coverage = (image[..., 2] - 15) / (235 - 15)
    assert coverage.sum() == pytest.approx(np.pi * 3.5**2, rel=0.02)
    # The triangle's centroid is its (x, y): apex up, base down.
    image = render(scene([("triangle", "green", 8.0, 9.0, 9.0)], "black")).astype(float)
    coverage = (image[..., 1] - 15) / (210 - 15)
    grid = np.arange(16) + 0.5
    assert coverage.sum() == pytest.approx(0.5 * 9.0**2, rel=0.03)
    assert (coverage.sum(axis=1) * grid).sum() / coverage.sum() == pytest.approx(9.0, abs=0.1)
    assert coverage[4:6].sum() < coverage[10:12].sum()


def test_noise_sits_on_the_background_with_the_stated_std():
    image = render(scene([("square", "magenta", 8.0, 8.0, 6.0)], "gray", noise=0.1)).astype(float)
    assert np.all(image[6:10, 6:10] == PALETTE["magenta"])
    outside = np.ones((16, 16), bool)
    outside[4:12, 4:12] = False
    assert image[outside].std() == pytest.approx(0.1 * 255, rel=0.15)


def test_blur_spreads_edges_but_keeps_mass():
    sharp = render(scene([("square", "red", 8.0, 8.0, 6.0)], "black")).astype(float)
    blurred = render(scene([("square", "red", 8.0, 8.0, 6.0)], "black", blur=1.0)).astype(float)
    assert blurred[..., 0].sum() == pytest.approx(sharp[..., 0].sum(), rel=0.01)
    intermediate = lambda im: np.sum((im[..., 0] > 40) & (im[..., 0] < 210))  # noqa: E731
    assert intermediate(sharp) == 0
    assert intermediate(blurred) >= 24


def test_render_scales_to_preview_sizes():
    sc = scene([("circle", "yellow", 8.0, 8.0, 8.0)], "gray")
    big = render(sc, size=64)
    assert big.shape == (64, 64, 3)
    covered = np.mean(np.all(big == PALETTE["yellow"], axis=-1))
    assert covered == pytest.approx(np.pi * 4**2 / 256, rel=0.08)


def test_scene_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="hexagon"):
        SceneObject("hexagon", "red", (1, 2, 3), 8, 8, 4)
    with pytest.raises(ValueError, match="noise_std"):
        Scene("black", (0, 0, 0), (), noise_std=2.0)
    with pytest.raises(ValueError, match="purple"):
        Scene("purple", (0, 0, 0), ())
    with pytest.raises(ValueError, match="size"):
        render(scene([]), size=0)
    with pytest.raises(ValueError, match="teal"):
        sample_images(["a teal circle"], np.random.default_rng(0))
