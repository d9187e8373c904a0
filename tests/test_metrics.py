"""The toy world's measuring stick: direction reading, Frechet distance, FLOPs, the harness.

Most tests need no trained net. Those that do use the zoo's metric nets when the zoo has them,
else tiny ones trained here in a few seconds (then only "well above chance" is asserted).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from animatelcm_helpers import evaluation, utils
from animatelcm_helpers.config import UserError
from animatelcm_helpers.toy import metrics
from animatelcm_helpers.toy.data import DIRECTION_VECTORS, MovingDigits, caption, to_uint8

ROOT = Path(__file__).resolve().parents[1]

ROW_KEYS = {"label", "scheduler", "steps", "guidance", "videos", "digit", "direction", "both", "score",
            "frechet", "floor", "unet_evals", "gflops", "seconds", "intervals"}


@pytest.fixture(scope="module")
def nets(toy_settings, tmp_path_factory):
    """(metric nets, trained for real?): the zoo's, else tiny ones trained in a temporary folder."""
    try:
        return metrics.load_metric_nets(), True
    except UserError:
        folder = tmp_path_factory.mktemp("metric_nets")
        tiny = metrics.train_metric_nets(
            folder, steps={"digit_classifier": 200, "video_encoder": 20},
            batch={"digit_classifier": 32, "video_encoder": 8}, progress=False, test_limit=100,
        )
        assert tiny.info["test"]["classifier_videos_plain"] > 0.6  # chance is 0.1
        return metrics.load_metric_nets(folder), False


def real_set(styles=("plain",), every=6):
    ds = MovingDigits("test", styles=styles)
    items = [ds[i] for i in range(0, len(ds), every)]
    return to_uint8(np.stack([it["pixel_values"] for it in items])), items


# ------------------------------------------------------------------------------------------
# Frechet distance
# ------------------------------------------------------------------------------------------


def exact_gaussian_sample(n, mean, cov_diag, seed):
    """n points whose sample mean and (unbiased) covariance are EXACTLY mean and diag(cov_diag)."""
    x = np.random.default_rng(seed).normal(size=(n, len(mean)))
    x -= x.mean(axis=0)
    x = x @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T  # whiten: cov = I
    return x * np.sqrt(cov_diag) + mean


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(300, 16)) * 3.0
    assert metrics.frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_known_gaussians():
    d = np.array([3.0, -1.0, 0.5, 2.0])
    a = exact_gaussian_sample(500, np.zeros(4), np.ones(4), seed=1)
    b = exact_gaussian_sample(400, d, np.ones(4), seed=2)
    assert metrics.frechet_distance(a, b) == pytest.approx(d @ d, rel=1e-6)  # identity covariances: |d|^2
    # diagonal covariances: |d|^2 + sum (sqrt(s_a) - sqrt(s_b))^2
    s_a, s_b = np.array([1.0, 4.0, 9.0, 0.25]), np.array([4.0, 1.0, 9.0, 1.0])
    a = exact_gaussian_sample(500, np.zeros(4), s_a, seed=3)
    b = exact_gaussian_sample(400, d, s_b, seed=4)
    expected = d @ d + np.sum((np.sqrt(s_a) - np.sqrt(s_b)) ** 2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_is_symmetric_and_safe_with_few_samples():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(200, 8)), rng.normal(size=(150, 8)) * 2 + 1
    assert metrics.frechet_distance(a, b) == pytest.approx(metrics.frechet_distance(b, a), rel=1e-6)
    few = rng.normal(size=(5, 64))  # fewer samples than dimensions: singular covariance
    value = metrics.frechet_distance(few, rng.normal(size=(7, 64)))
    assert np.isfinite(value) and value > 0


def test_frechet_distance_refuses_bad_input():
    with pytest.raises(UserError, match="at least 2"):
        metrics.frechet_distance(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(UserError, match="dimension"):
        metrics.frechet_distance(np.zeros((5, 4)), np.zeros((5, 3)))
    with pytest.raises(UserError, match="videos, features"):
        metrics.frechet_distance(np.zeros(5), np.zeros((5, 3)))


# ------------------------------------------------------------------------------------------
# Where is the digit, which way does it go
# ------------------------------------------------------------------------------------------


def moving_square(direction, frames=8, speed=2, start=(10, 12), size=4, colour=(255, 255, 255), bg=(0, 0, 0)):
    dx, dy = DIRECTION_VECTORS[direction]
    video = np.empty((frames, 32, 32, 3), np.uint8)
    video[:] = bg
    for t in range(frames):
        x, y = start[0] + dx * speed * t, start[1] + dy * speed * t
        video[t, y : y + size, x : x + size] = colour
    return video


def test_centroid_path_of_a_moving_square():
    path = metrics.centroid_path(moving_square("right", start=(4, 12)))
    expected = np.stack([4 + 1.5 + 2 * np.arange(8), np.full(8, 12 + 1.5)], axis=1)
    np.testing.assert_allclose(path, expected, atol=1e-6)
    path = metrics.centroid_path(moving_square("up", start=(20, 24), colour=(20, 20, 120), bg=(240, 230, 200)))
    np.testing.assert_allclose(path[:, 1], 24 + 1.5 - 2 * np.arange(8), atol=1e-6)


def test_read_direction_of_squares_and_a_still_video():
    squares = np.stack([moving_square(d, start=(12, 12)) for d in ("left", "right", "up", "down")])
    assert metrics.read_direction(squares) == ["left", "right", "up", "down"]
    still = np.repeat(moving_square("left")[:1], 8, axis=0)
    assert metrics.read_direction(still[None]) == [None]
    blank = np.zeros((1, 8, 32, 32, 3), np.uint8)
    assert metrics.read_direction(blank) == [None]


@pytest.mark.parametrize("styles", [("plain",), ("neon", "sunset", "paper", "checker")])
def test_read_direction_of_real_test_videos_with_trails(styles):
    videos, items = real_set(styles, every=8 * len(styles))
    read = metrics.read_direction(videos)
    accuracy = np.mean([r == it["direction"] for r, it in zip(read, items)])
    assert accuracy >= 0.98, accuracy


def test_videos_of_the_wrong_shape_are_refused():
    with pytest.raises(UserError, match="shape"):
        metrics.read_direction(np.zeros((8, 32, 32, 3), np.uint8))  # one video without the batch axis
    with pytest.raises(UserError, match="no videos"):
        metrics.read_direction([])
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        metrics.read_direction(np.full((1, 8, 32, 32, 3), -1.0, np.float32))


# ------------------------------------------------------------------------------------------
# The nets: faithfulness, features, floor
# ------------------------------------------------------------------------------------------


def test_faithfulness_of_real_videos_with_their_own_captions(nets):
    metric_nets, trained = nets
    videos, items = real_set(every=12)
    score = metrics.faithfulness(videos, [it["caption"] for it in items], metric_nets)
    assert score["direction"] == 1.0
    assert score["digit"] >= (0.97 if trained else 0.6)
    assert score["both"] == pytest.approx(score["digit"])
    wrong = [caption((it["digit"] + 1) % 10, it["direction"]) for it in items]
    assert metrics.faithfulness(videos, wrong, metric_nets)["digit"] < 0.3
    with pytest.raises(UserError, match="one prompt per video"):
        metrics.faithfulness(videos, ["a one moving up"], metric_nets)


def test_features_and_the_real_floor(nets):
    metric_nets, _ = nets
    videos = metrics.real_videos("test", n=40, seed=1)
    assert videos.shape == (40, 8, 32, 32, 3) and videos.dtype == np.uint8
    feats = metrics.video_features(videos, metric_nets)
    assert feats.shape == (40, metric_nets.encoder.config["features"])
    floor = metrics.real_floor(40, seed=0, nets=metric_nets)
    assert np.isfinite(floor) and floor >= 0
    assert metrics.real_floor(40, seed=0, nets=metric_nets) == floor  # deterministic
    noise = np.random.default_rng(0).integers(0, 256, size=(40, 8, 32, 32, 3), dtype=np.uint8)
    assert metrics.frechet_distance(metrics.video_features(noise, metric_nets), metrics.reference_features(metric_nets)) > floor


def test_digit_score_is_the_mean_probability_of_the_asked_digit(nets):
    metric_nets, trained = nets
    videos, items = real_set(every=12)
    right = [it["caption"] for it in items]
    wrong = [caption((it["digit"] + 1) % 10, it["direction"]) for it in items]
    logits = metrics._frame_logits(videos, metric_nets)
    expected = logits.softmax(dim=1)[np.arange(len(items)), [it["digit"] for it in items]].mean()
    assert metrics.digit_score(videos, right, metric_nets) == pytest.approx(float(expected), rel=1e-6)
    p_right, p_wrong = metrics.digit_score(videos, right, metric_nets), metrics.digit_score(videos, wrong, metric_nets)
    assert 0.0 <= p_wrong < p_right <= 1.0
    if trained:
        assert p_right > 0.9 and p_wrong < 0.1
    with pytest.raises(UserError, match="one prompt per video"):
        metrics.digit_score(videos, right[:1], metric_nets)


def test_image_features_and_the_image_floor(nets):
    metric_nets, _ = nets
    stills = metrics.real_images(40, skip=metrics.IMAGE_REFERENCE_SIZE)
    assert stills.shape == (40, 32, 32, 3) and stills.dtype == np.uint8
    feats = metrics.image_features(stills, metric_nets)
    assert feats.shape == (40, metric_nets.classifier.head.in_features)
    np.testing.assert_allclose(feats, metrics.image_features(stills[:, None], metric_nets))  # one-frame videos
    floor = metrics.image_floor(40, nets=metric_nets)
    assert np.isfinite(floor) and floor >= 0 and metrics.image_floor(40, nets=metric_nets) == floor
    noise = np.random.default_rng(0).integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    ref = metrics.image_reference_features(metric_nets)
    assert len(ref) == metrics.IMAGE_REFERENCE_SIZE
    assert metrics.frechet_distance(metrics.image_features(noise, metric_nets), ref) > 2 * floor
    with pytest.raises(UserError, match="between 2 and 180"):
        metrics.image_floor(500, nets=metric_nets)


def test_metric_nets_save_and_load(nets, tmp_path):
    metric_nets, _ = nets
    metrics.save_metric_nets(tmp_path, metric_nets)
    assert {p.name for p in tmp_path.iterdir()} == {
        "digit_classifier.safetensors", "video_encoder.safetensors", "metric_nets.json"}
    again = metrics.load_metric_nets(tmp_path)
    videos = metrics.real_videos("test", n=6, seed=2)
    np.testing.assert_array_equal(metrics.read_digits(videos, again), metrics.read_digits(videos, metric_nets))
    np.testing.assert_allclose(metrics.video_features(videos, again), metrics.video_features(videos, metric_nets))
    with pytest.raises(UserError, match="train_metric_nets"):
        metrics.load_metric_nets(tmp_path / "missing")


# ------------------------------------------------------------------------------------------
# Cost and the harness
# ------------------------------------------------------------------------------------------


def test_count_flops_of_a_linear_layer():
    layer = torch.nn.Linear(64, 32)
    assert utils.count_flops(layer, torch.zeros(10, 64)) == 2 * 10 * 64 * 32


def test_unet_flops_per_evaluation(lcm_pipe):
    flops = evaluation.unet_flops_per_evaluation(lcm_pipe)
    assert flops > 0 and flops == evaluation.unet_flops_per_evaluation(lcm_pipe, 8, 32, 32)
    assert evaluation.unet_flops_per_evaluation(lcm_pipe, frames=4) < flops


def test_evaluate_on_the_toy_pipeline(lcm_pipe, nets):
    metric_nets, _ = nets
    prompts = ["a one moving up", "a seven moving left", "a three moving down"]
    scheduler_before = lcm_pipe.scheduler
    row = evaluation.evaluate(lcm_pipe, steps=2, guidance=1.0, prompts=prompts, seeds=(0, 1), batch=4,
                           label="toy", nets=metric_nets)
    assert set(row) == ROW_KEYS
    assert row["label"] == "toy" and row["scheduler"] == "lcm" and row["steps"] == 2 and row["videos"] == 6
    assert row["unet_evals"] == 2 and row["seconds"] > 0 and row["gflops"] > 0
    for key in ("digit", "direction", "both"):
        assert 0.0 <= row[key] <= 1.0
    assert row["frechet"] >= 0 and row["floor"] >= 0
    # another sampler for one call, with classifier-free guidance (2 evaluations a step)
    row = evaluation.evaluate(lcm_pipe, steps=1, guidance=2.0, scheduler="ddim", prompts=prompts[:2], nets=metric_nets)
    assert row["scheduler"] == "ddim" and row["unet_evals"] == 2
    assert lcm_pipe.scheduler is scheduler_before
    table = evaluation.format_table([row], floor=1.5)
    assert "Frechet" in table and "ddim" in table and "1.50" in table
    with pytest.raises(UserError, match="cannot read the prompt"):
        evaluation.evaluate(lcm_pipe, steps=1, guidance=1.0, prompts=["a cat"], nets=metric_nets)


def test_evaluate_on_an_image_pipeline_measures_stills(nets):
    from animatelcm_helpers import pipelines

    metric_nets, _ = nets
    pipe = pipelines.load_t2i(world="toy")
    row = evaluation.evaluate(pipe, steps=2, guidance=2.0, prompts=["a one", "a seven"], seeds=(0, 1, 2), batch=6,
                           nets=metric_nets)
    assert set(row) == ROW_KEYS and row["videos"] == 6 and row["unet_evals"] == 4
    assert row["direction"] is None and row["both"] is None
    assert 0.0 <= row["score"] <= 1.0 and row["frechet"] >= 0
    assert row["floor"] == pytest.approx(metrics.image_floor(6, nets=metric_nets))
    table = evaluation.format_table([row])
    assert "digit p" in table


def test_evaluate_script(nets, tmp_path, capsys):
    metric_nets, _ = nets
    metrics.save_metric_nets(tmp_path / "nets", metric_nets)
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    code = script.main(["--model", "animatelcm", "--steps", "1", "--prompts", "a one moving up", "a two moving left",
                        "--metrics", str(tmp_path / "nets"), "--json", str(tmp_path / "rows.json")])
    out = capsys.readouterr()
    assert code == 0 and "| animatelcm" in out.out and (tmp_path / "rows.json").exists()
    assert script.main(["--model", "nope", "--metrics", str(tmp_path / "nets")]) == 2
    assert "error:" in capsys.readouterr().err


def test_read_styles_on_real_held_out_images():
    from animatelcm_helpers.toy.data import STYLES

    correct = total = 0
    for style in STYLES:
        ds = MovingDigits("test", kind="image", styles=(style,), seed=11)  # not the centroids' seed
        imgs = to_uint8(np.stack([ds[i]["pixel_values"] for i in range(0, 360, 12)]))
        read = metrics.read_styles(imgs)
        correct += sum(r == style for r in read)
        total += len(read)
    assert correct / total >= 0.95
    with pytest.raises(UserError, match=r"shape \(N, height, width, 3\)"):
        metrics.read_styles(np.zeros((32, 32, 3), np.uint8))


def test_evaluate_with_motion_loras_uses_each_prompts_own(lcm_pipe, nets):
    from animatelcm_helpers import pipelines

    metric_nets, _ = nets
    prompts = ["a one moving up", "a seven moving left", "a three moving up"]
    weights, adapters = dict(lcm_pipe.adapter_weights), lcm_pipe.get_list_adapters()
    row = evaluation.evaluate(lcm_pipe, steps=2, guidance=1.0, prompts=prompts, seeds=(0,), nets=metric_nets,
                           motion_loras=True)
    assert row["videos"] == 3
    assert lcm_pipe.adapter_weights == weights and lcm_pipe.get_list_adapters() == adapters  # put back as it was
    videos = []
    pipe = pipelines.load_t2v("animatelcm")
    for i, p in enumerate(prompts):  # the same videos, one by one with the prompt's own motion LoRA
        pipelines.use_motion_lora(pipe, p.split()[-1])
        videos.append(pipelines.generate(pipe, p, steps=2, seed=evaluation.video_seed(i, 0)).frames)
    alone = metrics.faithfulness(np.stack(videos), prompts, metric_nets)
    assert (row["digit"], row["direction"]) == (alone["digit"], alone["direction"])
    with pytest.raises(UserError, match="motion word"):
        evaluation.evaluate(lcm_pipe, steps=1, guidance=1.0, prompts=["a one"], nets=metric_nets, motion_loras=True)


def test_bootstrap_intervals_and_the_tie_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, 400)
    iv = metrics.bootstrap(x)
    # the percentile bootstrap of a mean is close to the normal interval mean +- 1.96 s / sqrt(n)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert iv.value == pytest.approx(x.mean()) and iv.n == 400
    assert iv.low == pytest.approx(x.mean() - half, abs=0.03) and iv.high == pytest.approx(x.mean() + half, abs=0.03)
    assert metrics.bootstrap(x) == iv  # seeded: the same data, the same interval
    # a fraction from (p, n) alone equals the bootstrap of its raw outcomes
    raw = np.r_[np.ones(953), np.zeros(7)]
    assert metrics.proportion_interval(953 / 960, 960) == metrics.bootstrap(raw)
    # issue 22's example: 953 against 947 of 960 is a tie, not "more often than both"
    a, b = metrics.proportion_interval(953 / 960, 960), metrics.proportion_interval(947 / 960, 960)
    assert metrics.compare(a, b) == "tie"
    c = metrics.proportion_interval(0.5, 960)
    assert metrics.compare(a, c) == "win" and metrics.compare(c, a) == "loss"
    assert metrics.compare(c, a, higher_is_better=False) == "win"  # a distance: lower is better
    assert str(a).endswith("(n = 960)")
    with pytest.raises(UserError, match="at least 2 measured items"):
        metrics.bootstrap([1.0])



def test_stored_rows_are_shown_and_compared_by_the_rule():
    """results.shown / results.verdict: the notebooks' one way to print a row's value with its
    interval and to call a win, tie or loss from two stored rows."""
    from animatelcm_helpers import results

    a = {"videos": 960, "digit": 953 / 960, "frechet": 20.0, "intervals": {"frechet": [18.0, 22.0]}}
    b = {"videos": 960, "digit": 947 / 960, "frechet": 30.0, "intervals": {"frechet": [27.0, 33.0]}}
    c = {"videos": 960, "digit": 0.5, "frechet": 21.0}
    assert results.shown(a, "digit", 3) == metrics.proportion_interval(953 / 960, 960).format(3)
    assert results.shown(a, "frechet", 1) == "20.0 [18.0, 22.0]"
    assert results.shown(c, "frechet", 1) == "21.0 (no interval stored)"
    assert results.verdict(a, b, "digit") == "tie" and results.verdict(a, c, "digit") == "win"
    assert results.verdict(a, b, "frechet") == "win"  # a distance: lower is better by default
    assert results.verdict(a, b, "frechet", lower_is_better=False) == "loss"
    assert results.verdict(c, a, "frechet") == "not called (no interval stored)"

def test_frechet_interval_brackets_the_distance(nets):
    real = metrics.reference_features(nets[0])
    feats = real[:60] + np.random.default_rng(1).normal(0, 0.5, real[:60].shape)
    iv = metrics.frechet_interval(feats, real, draws=50)
    assert iv.value == pytest.approx(metrics.frechet_distance(feats, real))
    assert iv.low < iv.value < iv.high and iv.n == 60
    assert iv.value - iv.low == pytest.approx(iv.high - iv.value)  # centred on the distance
    # the spread is the percentile bootstrap's (same draws), whose interval sits above the distance
    spread = metrics.bootstrap(feats, lambda f: metrics.frechet_distance(f, real), 50)
    assert iv.high - iv.low == pytest.approx(spread.high - spread.low)
    assert (spread.low + spread.high) / 2 > iv.value  # the resampling's upward bias, removed by centring


def test_the_percentile_bootstrap_of_a_frechet_distance_is_biased_upward():
    """Why frechet_interval centres its interval: resampled sets repeat items, and the distance of a
    resampled set is larger on average; here the percentile interval even misses the distance."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    feats = rng.normal(size=(80, 8))  # the same distribution: a small distance
    value = metrics.frechet_distance(feats, real)
    spread = metrics.bootstrap(feats, lambda f: metrics.frechet_distance(f, real), 100)
    assert spread.low > value  # every plausible resampled distance is above the measured one
    iv = metrics.frechet_interval(feats, real, draws=100)
    assert iv.low < value < iv.high
