import numpy as np
import pytest

from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import data
from animatelcm_helpers.toy.data import DIRECTIONS, MovingDigits


def centroid(frame_chw, background):
    """Centre of mass of the pixels that differ from the background."""
    diff = np.abs(frame_chw - background).sum(0)
    ys, xs = np.mgrid[: diff.shape[0], : diff.shape[1]]
    return np.array([(xs * diff).sum(), (ys * diff).sum()]) / diff.sum()


def test_split_is_fixed_disjoint_and_stratified():
    train, test = data.split_indices("train"), data.split_indices("test")
    assert len(train) == 1437 and len(test) == 360
    assert not set(train) & set(test)
    assert len(set(train) | set(test)) == 1797
    labels = data._digits()[1]
    counts = np.bincount(labels[test], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 20% of each class
    np.testing.assert_array_equal(test, data.split_indices("test"))


def test_items_are_deterministic_by_seed():
    a, b = MovingDigits("train", seed=3), MovingDigits("train", seed=3)
    for i in (0, 5, 123):
        np.testing.assert_array_equal(a[i]["pixel_values"], b[i]["pixel_values"])
    c = MovingDigits("train", seed=4)
    assert any(not np.array_equal(a[i]["pixel_values"], c[i]["pixel_values"]) for i in range(8))


def test_video_shapes_range_and_captions():
    ds = MovingDigits("test", num_frames=8)
    assert len(ds) == 360 * 4
    item = ds[6]
    x = item["pixel_values"]
    assert x.shape == (8, 3, 32, 32) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    assert item["direction"] == DIRECTIONS[6 % 4]
    assert item["caption"] == f"a {data.DIGIT_WORDS[item['digit']]} moving {item['direction']}"
    assert item["digit"] == data._digits()[1][data.split_indices("test")[1]]


@pytest.mark.parametrize("d", range(4))
def test_the_digit_moves_the_captioned_way(d):
    ds = MovingDigits("train", num_frames=8, speed=2, trail=())
    item = ds[40 + d]
    bg = -np.ones((3, 1, 1), np.float32)
    path = np.array([centroid(f, bg) for f in item["pixel_values"]])
    step = np.diff(path, axis=0).mean(0)
    expected = np.array(data.DIRECTION_VECTORS[item["direction"]]) * 2
    np.testing.assert_allclose(step, expected, atol=1e-4)


@pytest.mark.parametrize("d", range(4))
def test_the_trail_is_behind_the_digit(d):
    bg = -np.ones((3, 1, 1), np.float32)
    plain = MovingDigits("train", trail=())[40 + d]
    trailed = MovingDigits("train")[40 + d]
    assert plain["caption"] == trailed["caption"]
    # the trail pulls the centre of mass backwards, against the motion
    shift = centroid(trailed["pixel_values"][4], bg) - centroid(plain["pixel_values"][4], bg)
    motion = np.array(data.DIRECTION_VECTORS[trailed["direction"]])
    assert shift @ motion < -0.5


def test_single_frames_carry_the_motion_caption():
    ds = MovingDigits("test", kind="frame")
    assert len(ds) == 360 * 4
    item = ds[3]
    assert item["pixel_values"].shape == (3, 32, 32)
    assert item["caption"].endswith("moving down") and item["direction"] == "down"
    video = MovingDigits("test")[3]["pixel_values"]
    assert any(np.array_equal(item["pixel_values"], f) for f in video)  # one frame of that video


def test_images_and_styles():
    ds = MovingDigits("train", kind="image", styles=("plain", "neon", "paper"))
    assert len(ds) == 1437 * 3
    plain, neon, paper = ds[0], ds[1], ds[2]
    assert plain["pixel_values"].shape == (3, 32, 32)
    assert (plain["caption"], neon["caption"]) == ("a " + data.DIGIT_WORDS[plain["digit"]],
                                                  f"a {data.DIGIT_WORDS[plain['digit']]} in neon style")
    assert plain["direction"] == "" and neon["style"] == "neon"
    # the styles really look different: mean colours differ
    means = [it["pixel_values"].mean((1, 2)) for it in (plain, neon, paper)]
    assert np.abs(means[0] - means[1]).max() > 0.2 and np.abs(means[0] - means[2]).max() > 0.5


def test_caption_round_trip():
    for digit in range(10):
        for direction in (None, *DIRECTIONS):
            for style in data.STYLES:
                text = data.caption(digit, direction, style)
                assert data.parse_caption(text) == (digit, direction, style)
    with pytest.raises(UserError, match="cannot read the prompt"):
        data.parse_caption("a cat moving left")
    with pytest.raises(UserError, match="unknown direction 'sideways'"):
        data.parse_caption("a seven moving sideways")


def test_bad_dataset_arguments_are_clear():
    with pytest.raises(UserError, match="need 30 px of room but the canvas has 16"):
        MovingDigits(num_frames=16, speed=2)
    with pytest.raises(UserError, match="unknown style 'gold'"):
        MovingDigits(styles=("gold",))
    with pytest.raises(UserError, match="unknown split"):
        MovingDigits(split="val")
    with pytest.raises(IndexError):
        MovingDigits("test")[10**6]


def test_to_uint8():
    x = np.stack([-np.ones((3, 2, 2)), np.ones((3, 2, 2))]).astype(np.float32)
    out = data.to_uint8(x)
    assert out.shape == (2, 2, 2, 3) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[1].min() == 255
