import dataclasses

import numpy as np
import pytest

from sail_core.world.analyse import analyse
from sail_core.world.grammar import sample_specs
from sail_core.world.layout import size_class
from sail_core.world.render import render, render_batch, sample_scenes
from tests.world.helpers import scene


def _score(scenes, images):
    """Per-scene recovery of count, colour, background; per-object shape, size class, centroid error."""
    count = colour = background = 0
    shapes, sizes, errors = [], [], []
    for sc, image in zip(scenes, images):
        found = analyse(image)
        background += found.background == sc.background
        if found.count != len(sc.objects):
            continue
        count += 1
        colour += all(o.colour == sc.objects[0].colour for o in found.objects)
        for truth in sc.objects:
            match = min(found.objects, key=lambda o: np.hypot(o.x - truth.x, o.y - truth.y))
            errors.append(np.hypot(match.x - truth.x, match.y - truth.y))
            shapes.append(match.shape == truth.shape)
            sizes.append(abs(match.size - truth.size))
    n = len(scenes)
    return {
        "count": count / n,
        "colour": colour / n,
        "background": background / n,
        "shape": float(np.mean(shapes)),
        "size_error": float(np.mean(sizes)),
        "centroid_error": float(np.mean(errors)),
    }


def test_clean_renders_are_read_back_almost_perfectly():
    rng = np.random.default_rng(100)
    scenes = [dataclasses.replace(s, noise_std=0.0, blur_sigma=0.0) for s in sample_scenes(sample_specs(rng, 300), rng)]
    score = _score(scenes, render_batch(scenes))
    # Measured on this seed: 1.0 / 1.0 / 1.0, shape 1.0, size error ~0.06 px, centroid error ~0.03 px.
    assert score["count"] >= 0.99
    assert score["colour"] >= 0.99
    assert score["background"] == 1.0
    assert score["shape"] >= 0.97
    assert score["size_error"] < 0.15
    assert score["centroid_error"] < 0.1


def test_noisy_blurred_web_renders_are_read_back_reliably():
    rng = np.random.default_rng(101)
    scenes = sample_scenes(sample_specs(rng, 300), rng)
    score = _score(scenes, render_batch(scenes))
    # Measured over 600 web scenes: count 0.99, colour 0.99, shape 0.96 (0.90 below 4.5 px).
    assert score["count"] >= 0.95
    assert score["colour"] >= 0.95
    assert score["background"] >= 0.99
    assert score["shape"] >= 0.9
    assert score["size_error"] < 0.4
    assert score["centroid_error"] < 0.25


def test_degraded_model_like_samples_are_still_read():
    # Noise over the whole image (objects included) and a global colour cast, like a weak model's.
    rng = np.random.default_rng(102)
    scenes = sample_scenes(sample_specs(rng, 200), rng)
    images = render_batch(scenes).astype(float)
    images += rng.normal(0, 0.06 * 255, images.shape) + rng.uniform(-20, 20, (len(images), 1, 1, 3))
    score = _score(scenes, np.clip(np.rint(images), 0, 255).astype(np.uint8))
    assert score["count"] >= 0.9
    assert score["colour"] >= 0.9
    assert score["shape"] >= 0.85


def test_position_and_size_of_a_known_object():
    found = analyse(render(scene([("triangle", "cyan", 4.0, 11.5, 6.0)], "white")))
    assert found.count == 1
    obj = found.objects[0]
    assert (obj.colour, obj.shape, found.background) == ("cyan", "triangle", "white")
    assert obj.x == pytest.approx(4.0, abs=0.1) and obj.y == pytest.approx(11.5, abs=0.1)
    assert obj.size == pytest.approx(6.0, abs=0.2)
    assert size_class(obj.size) == "large"


def test_background_noise_and_edge_blur_are_measured_monotonically():
    base = scene([("circle", "red", 8.0, 8.0, 8.0)], "gray")
    noise = [analyse(render(dataclasses.replace(base, noise_std=s))).background_noise for s in (0.0, 0.03, 0.06, 0.12)]
    assert noise[0] < 0.005
    assert all(a < b for a, b in zip(noise, noise[1:]))
    assert noise == pytest.approx([0.0, 0.03, 0.06, 0.12], abs=0.02)
    blur = [analyse(render(dataclasses.replace(base, blur_sigma=s))).edge_blur for s in (0.0, 0.4, 0.8, 1.2)]
    assert all(a < b for a, b in zip(blur, blur[1:]))
    assert blur == pytest.approx([0.0, 0.4, 0.8, 1.2], abs=0.2)


def test_two_objects_and_specks():
    pair = [("square", "blue", 4.0, 8.0, 6.0), ("square", "blue", 12.0, 8.0, 6.0)]
    two = analyse(render(scene(pair, "black", blur=1.0)))
    assert two.count == 2
    assert sorted(round(o.x) for o in two.objects) == [4, 12]
    image = render(scene([("circle", "red", 8.0, 8.0, 7.0)], "black"))
    image[1, 1] = (255, 255, 255)  # a one-pixel speck is not an object
    assert analyse(image).count == 1


def test_blank_canvas_has_no_objects():
    found = analyse(render(scene([], "white")))
    assert found.count == 0
    assert found.background == "white"
    assert np.isnan(found.edge_blur)
    assert found.background_noise == 0.0


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        analyse(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="square"):
        analyse(np.zeros((16, 12, 3), np.uint8))
