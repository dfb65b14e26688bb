"""The empirical privacy audit: attack statistics, audit-ready data, ``ecrec privacy audit``.

The statistics are checked against sklearn and brute force, on random scores (AUC near
0.5) and on a planted perfect leak (AUC 1); the data split against its promises
(disjoint shoppers, nothing lost, canaries only in training); the command against
missing and broken run folders (one line, non-zero exit). The one test that trains a
ranker is marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ecrec.cli import main
from ecrec.data.schema import USER_ID
from ecrec.errors import EcrecError
from ecrec.privacy.audit import (
    attack_summary,
    auc,
    bce_per_example,
    canary_rank,
    expected_exposure,
    exposure,
    exposure_summary,
    paired_attack_summary,
    tpr_at_fpr,
)
from ecrec.privacy.audit_data import (
    CANARY_ID,
    MembershipSetup,
    plant_membership_audit,
    read_membership,
    write_membership,
)

scores = st.lists(st.integers(-5, 5), min_size=1, max_size=40)


# --------------------------------------------------------------------------- statistics


@settings(deadline=None)  # a loaded CI machine, not a slow function
@given(members=scores, others=scores)
def test_auc_is_sklearns_including_ties(members, others):
    signal = np.array(members + others, dtype=float)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    assert auc(signal, is_member) == pytest.approx(roc_auc_score(is_member, signal))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(300, 600))
def test_auc_of_random_scores_is_a_coin(seed, n):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=2 * n)
    is_member = rng.permutation(np.r_[np.ones(n, bool), np.zeros(n, bool)])
    # sd of the AUC under the null is sqrt((2n + 1) / (12 n^2)) <= 0.017: 0.1 is ~6 sd.
    assert abs(auc(signal, is_member) - 0.5) < 0.1
    summary = attack_summary(signal, is_member, n_bootstrap=200, seed=seed)
    low, high = summary["auc_ci"]
    assert low < summary["auc"] < high and high - low < 0.2
    assert summary["tpr_at_fpr"] < 0.1  # at FPR 1% a coin flags about 1% of members


@settings(max_examples=50, deadline=None)
@given(
    members=st.lists(st.floats(-100, 100), min_size=1, max_size=50),
    others=st.lists(st.floats(-100, 100), min_size=1, max_size=50),
)
def test_a_planted_perfect_leak_is_found_with_certainty(members, others):
    gap = max(others) - min(members) + 1.0  # every member above every non-member
    signal = np.array([m + gap for m in members] + others)
    is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
    summary = attack_summary(signal, is_member, n_bootstrap=50)
    assert summary["auc"] == 1.0 and summary["auc_ci"] == [1.0, 1.0]
    assert summary["tpr_at_fpr"] == 1.0 and summary["tpr_at_fpr_ci"] == [1.0, 1.0]
    assert auc(-signal, is_member) == 0.0 and tpr_at_fpr(-signal, is_member) == 0.0


@settings(deadline=None)
@given(members=scores, others=scores, fpr=st.sampled_from([0.0, 0.01, 0.1, 0.25, 0.5]))
def test_tpr_at_fpr_is_the_best_threshold_that_keeps_the_fpr(members, others, fpr):
    m, o = np.array(members, float), np.array(others, float)
    best = 0.0  # brute force: every threshold "signal > t", t over all values and -inf
    for t in [-math.inf, *np.unique(np.r_[m, o])]:
        if np.mean(o > t) <= fpr:
            best = max(best, float(np.mean(m > t)))
    signal = np.r_[m, o]
    is_member = np.r_[np.ones(len(m), bool), np.zeros(len(o), bool)]
    assert tpr_at_fpr(signal, is_member, fpr=fpr) == best


def test_bootstrap_resamples_whole_clusters():
    """Ten copies of each row are one observation, not ten: with the copies as one cluster
    the interval is as wide as for the rows alone; counted as rows it is far too narrow."""
    rng = np.random.default_rng(1)
    signal = rng.normal(size=60) + np.r_[np.full(30, 0.3), np.zeros(30)]
    is_member = np.r_[np.ones(30, bool), np.zeros(30, bool)]
    width = np.diff(attack_summary(signal, is_member, n_bootstrap=400)["auc_ci"])[0]
    copies = np.repeat(signal, 10), np.repeat(is_member, 10), np.repeat(np.arange(60), 10)
    clustered = attack_summary(copies[0], copies[1], clusters=copies[2], n_bootstrap=400)
    naive = attack_summary(copies[0], copies[1], n_bootstrap=400)
    assert clustered["member_clusters"] == 30 and clustered["members"] == 300
    assert np.diff(clustered["auc_ci"])[0] == pytest.approx(width, rel=0.25)
    assert np.diff(naive["auc_ci"])[0] < 0.6 * width


@settings(deadline=None)
@given(signal=st.lists(st.floats(-100, 100), min_size=1, max_size=60), shift=st.floats(-5, 5))
def test_a_paired_attack_with_nothing_to_tell_apart_is_a_coin(signal, shift):
    """Every row scored the same by the run that trained on it and the one that did not:
    the attack has nothing, whatever the rows' own difficulty; swapping the runs mirrors
    the AUC."""
    values = np.array(signal)
    summary = paired_attack_summary(values, values, n_bootstrap=20)
    assert summary["auc"] == 0.5 and summary["auc_ci"] == [0.5, 0.5]
    assert summary["members"] == summary["non_members"] == len(values) and summary["paired"]
    shifted = values + shift
    forward = paired_attack_summary(shifted, values, n_bootstrap=1)["auc"]
    backward = paired_attack_summary(values, shifted, n_bootstrap=1)["auc"]
    assert forward + backward == pytest.approx(1.0)
    if shift > 0:
        assert forward >= 0.5


def test_the_pairing_cancels_the_luck_of_the_split():
    """Two halves of one merchant, one easier than the other, and models that learned
    nothing about their members: a single run's attack reads the difficulty gap as a leak
    (or as its opposite, in the mirror), the paired attack does not. With a real
    membership effect planted, the paired attack finds it."""
    rng = np.random.default_rng(7)
    n = 400
    difficulty = np.r_[rng.normal(0.4, 1, n), rng.normal(-0.4, 1, n)]  # half A easier
    half_a = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    run, mirror = difficulty + rng.normal(0, 0.3, 2 * n), difficulty + rng.normal(0, 0.3, 2 * n)
    single = auc(run, half_a)  # run trained on A: A's rows are its "members"
    single_mirror = auc(mirror, ~half_a)
    assert single > 0.6 and single_mirror < 0.4  # the gap, read as a leak and its opposite
    inside = np.where(half_a, run, mirror)
    outside = np.where(half_a, mirror, run)
    clusters = np.arange(2 * n) // 2  # shoppers of two rows each
    paired = paired_attack_summary(inside, outside, clusters=clusters, n_bootstrap=300)
    assert abs(paired["auc"] - 0.5) < 0.03
    assert paired["auc_ci"][0] < 0.5 < paired["auc_ci"][1] and paired["member_clusters"] == n
    leak = paired_attack_summary(inside + 0.3, outside, clusters=clusters, n_bootstrap=300)
    assert leak["auc_ci"][0] > 0.5


def test_bce_per_example_is_torchs():
    import torch

    logits = np.array([-3.0, -0.5, 0.0, 2.0, 40.0, -40.0])
    targets = np.array([0.0, 1.0, 1 / 3, 2 / 3, 0.0, 1.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.tensor(logits), torch.tensor(targets), reduction="none"
    ).numpy()
    np.testing.assert_allclose(bce_per_example(logits, targets), expected, rtol=1e-12)


def test_non_finite_signals_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        auc([0.1, math.nan], [True, False])


# --------------------------------------------------------------------------- exposure


def test_exposure_at_the_extremes_and_on_ties():
    refs = np.arange(99.0)
    assert exposure(1000.0, refs) == pytest.approx(math.log2(100))  # ranked first
    assert exposure(-1.0, refs) == pytest.approx(0.0)  # ranked last
    assert canary_rank(5.0, [5.0, 5.0, 1.0]) == 2.0  # mid-rank among the tied


@settings(deadline=None)
@given(n=st.integers(1, 300))
def test_expected_exposure_is_the_mean_over_uniform_ranks(n):
    everything = [math.log2(n + 1) - math.log2(rank) for rank in range(1, n + 2)]
    assert expected_exposure(n) == pytest.approx(np.mean(everything))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_unmemorised_canaries_have_the_baseline_exposure(seed):
    rng = np.random.default_rng(seed)
    summary = exposure_summary(rng.normal(size=400), [rng.normal(size=49) for _ in range(400)])
    assert summary["mean_exposure"] == pytest.approx(expected_exposure(49), abs=0.25)
    planted = exposure_summary(np.full(5, 10.0), [rng.normal(size=49) for _ in range(5)])
    assert planted["mean_exposure"] == planted["max_possible"] == math.log2(50)
    assert planted["top_ranked"] == 5


# --------------------------------------------------------------------------- data


def _key(frame: pd.DataFrame) -> pd.Series:
    return frame["query_id"] + "|" + frame["product_id"]


def test_planting_splits_shoppers_and_keeps_every_row(market):
    setup = MembershipSetup(holdout=0.4, canaries=3, repeats=2, references=7, seed=3)
    frames, data = plant_membership_audit(market.merchants, setup)
    original = market.merchants[data.merchant]
    assert data.merchant == max(market.merchants, key=lambda m: len(market.merchants[m]))
    train = frames[data.merchant]
    planted = train["query_id"].isin(set(data.canaries["query_id"]))
    assert planted.sum() == 6 and (train.loc[planted, "label"] == 1).all()
    kept = train[~planted]
    assert set(kept[USER_ID]).isdisjoint(data.holdout[USER_ID])
    assert sorted(_key(kept)) + sorted(_key(data.holdout)) != []  # both sides non-empty
    assert sorted([*_key(kept), *_key(data.holdout)]) == sorted(_key(original))
    # Canaries: one fresh shopper each; references never in any training file.
    assert data.canaries.groupby(CANARY_ID)[USER_ID].nunique().eq(1).all()
    assert not set(data.canaries[USER_ID]) & set(original[USER_ID])
    assert len(data.references) == 3 * 7
    all_queries = set(pd.concat(frames.values())["query"])
    assert not set(data.references["query"]) & all_queries
    assert set(data.canaries["query"]) <= all_queries
    for other in set(frames) - {data.merchant}:
        assert frames[other] is market.merchants[other]
    # Deterministic for its seed, different for another.
    again = plant_membership_audit(market.merchants, setup)[1]
    assert again.references["query"].tolist() == data.references["query"].tolist()
    other_seed = MembershipSetup(holdout=0.4, canaries=3, repeats=2, references=7, seed=4)
    assert plant_membership_audit(market.merchants, other_seed)[1].references["query"].tolist() != (
        data.references["query"].tolist()
    )


def test_a_mirrored_split_swaps_the_two_halves_and_keeps_the_canaries(market):
    setup = MembershipSetup(holdout=0.5, canaries=3, repeats=2, references=5, seed=3)
    frames, data = plant_membership_audit(market.merchants, setup)
    mirror_setup = MembershipSetup(holdout=0.5, canaries=3, repeats=2, references=5, seed=3,
                                   mirror=True)  # fmt: skip
    mirror_frames, mirror = plant_membership_audit(market.merchants, mirror_setup)
    planted = set(data.canaries["query_id"])
    trained = frames[data.merchant][~frames[data.merchant]["query_id"].isin(planted)]
    trained_there = mirror_frames[data.merchant]
    trained_there = trained_there[~trained_there["query_id"].isin(planted)]
    assert mirror.merchant == data.merchant and mirror.setup.mirror
    assert sorted(_key(trained)) == sorted(_key(mirror.holdout))
    assert sorted(_key(trained_there)) == sorted(_key(data.holdout))
    pd.testing.assert_frame_equal(data.canaries, mirror.canaries)
    pd.testing.assert_frame_equal(data.references, mirror.references)


def test_membership_files_round_trip_and_missing_ones_are_one_line(market, tmp_path):
    _, data = plant_membership_audit(market.merchants, MembershipSetup(canaries=2, references=3))
    write_membership(data, tmp_path)
    back = read_membership(tmp_path)
    assert back.merchant == data.merchant and back.setup == data.setup
    pd.testing.assert_frame_equal(back.references, data.references, check_dtype=False)
    with pytest.raises(EcrecError, match="ecrec data synth") as err:
        read_membership(tmp_path / "elsewhere")
    assert "\n" not in str(err.value)
    (tmp_path / "membership" / "holdout.parquet").write_bytes(b"torn")
    with pytest.raises(EcrecError, match=r"holdout\.parquet: unreadable"):
        read_membership(tmp_path)


def test_data_synth_writes_audit_ready_data_that_validates(capsys, tmp_path):
    out = tmp_path / "data"
    code = main(
        ["data", "synth", "--out", str(out), "--merchants", "2", "--queries-per-merchant", "12",
         "--candidates", "4", "--validation-queries", "4", "--canaries", "2",
         "--canary-references", "5"]
    )  # fmt: skip
    assert code == 0
    assert "membership audit: merchant m00" in capsys.readouterr().out
    setup = json.loads((out / "membership" / "setup.json").read_text())
    assert setup["merchant"] == "m00" and setup["rows"]["references"] == 10
    assert main(["data", "validate", str(out)]) == 0


def test_data_synth_refuses_a_mirror_of_nothing(capsys, tmp_path):
    code = main(["data", "synth", "--out", str(tmp_path / "d"), "--audit-mirror"])
    _one_line_error(code, capsys.readouterr().err, "--audit-mirror needs --audit-holdout")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------- the command


def _audit(capsys, run: Path) -> tuple[int, str]:
    code = main(["privacy", "audit", str(run), "--bootstrap", "50"])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, match: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and match in lines[0], err


def _run_folder(
    tmp_path: Path, ranker, *, data_dir: Path, dp: bool = True, name: str = "run"
) -> Path:
    """A run folder as the server writes it: config, round 0 and 1 checkpoints."""
    from ecrec.config import RunConfig
    from ecrec.runfolder import RunFolder

    config = RunConfig().replace("data", dir=str(data_dir)).replace("model", **_tiny(ranker))
    config = config.replace("train", dp=dp)
    run = RunFolder(tmp_path / name)
    run.create()
    run.write_config(config.to_toml())
    for server_round in (0, 1):
        run.save_checkpoint(server_round, ranker.adapter_state(), {})
    return run.path


def _tiny(ranker) -> dict:
    import dataclasses

    return dataclasses.asdict(ranker.config)


def _cross_encoder(config):
    """The LoRA cross-encoder (the ranker that can memorise), whatever the default
    architecture is."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config)}
    return (
        dataclasses.replace(config, architecture="cross-encoder")
        if "architecture" in names
        else config
    )


def test_audit_refuses_a_missing_or_broken_run_folder_in_one_line(capsys, tmp_path):
    _one_line_error(*_audit(capsys, tmp_path / "nowhere"), "no such run folder")
    (tmp_path / "empty").mkdir()
    _one_line_error(*_audit(capsys, tmp_path / "empty"), "config.toml: missing")


def test_audit_refuses_runs_without_audit_data_or_with_a_torn_checkpoint(
    capsys, tmp_path, market, tiny_config
):
    from ecrec.data.synth import write_marketplace
    from ecrec.model.ranker import build_ranker

    data_dir = tmp_path / "data"
    write_marketplace(market, data_dir)
    ranker = build_ranker(tiny_config, device="cpu")
    run = _run_folder(tmp_path, ranker, data_dir=data_dir)
    _one_line_error(*_audit(capsys, run), "held-out rows")
    (run / "checkpoints" / "round_0001.npz").write_bytes(b"not a checkpoint")
    _one_line_error(*_audit(capsys, run), "round_0001.npz: unreadable checkpoint")


def _audit_data(market, folder: Path, **setup) -> Path:
    from ecrec.data.synth import write_marketplace

    frames, data = plant_membership_audit(market.merchants, MembershipSetup(**setup))
    write_marketplace(dataclasses.replace(market, merchants=frames), folder)
    write_membership(data, folder)
    return folder


def test_a_mirrored_audit_pairs_every_row_and_refuses_a_pair_that_is_not_one(
    capsys, tmp_path, market, tiny_config
):
    """The same untrained model in both runs scores each row the same in both, so the
    paired attack must be a coin (a misaligned pairing would not be); a run that is
    not the mirror (itself, another split seed, other training) is refused in one line."""
    from ecrec.model.ranker import build_ranker

    ranker = build_ranker(tiny_config, device="cpu")
    setup = {"canaries": 2, "references": 5, "seed": 1}
    here = _audit_data(market, tmp_path / "a", **setup)
    there = _audit_data(market, tmp_path / "b", mirror=True, **setup)
    held = there / "membership" / "holdout.parquet"  # rows in another order than run-a's file
    pd.read_parquet(held).sample(frac=1.0, random_state=0).to_parquet(held, index=False)
    other = _audit_data(market, tmp_path / "c", mirror=True, **{**setup, "seed": 2})
    run = _run_folder(tmp_path, ranker, data_dir=here, name="run-a")
    mirror = _run_folder(tmp_path, ranker, data_dir=there, name="run-b")

    assert main(["privacy", "audit", str(run), "--mirror", str(mirror), "--bootstrap", "50"]) == 0
    result = json.loads((run / "privacy_audit.json").read_text())
    pairing, loss = result["pairing"], result["attacks"]["loss"]
    # (Rows batched differently in the two runs differ in the last float bits.)
    assert loss["paired"] and loss["auc"] == pytest.approx(0.5, abs=1e-3)
    assert loss["auc_ci"] == pytest.approx([0.5, 0.5], abs=1e-2)
    assert result["members"] == pairing["rows"]["run"] + pairing["rows"]["mirror"]
    assert pairing["mirror_run"] == str(mirror) and set(pairing["single"]) == {"run", "mirror"}
    assert "mirrored pair with" in (run / "privacy_audit.md").read_text()
    capsys.readouterr()

    def refused(other_run: Path, match: str) -> None:
        code = main(["privacy", "audit", str(run), "--mirror", str(other_run)])
        _one_line_error(code, capsys.readouterr().err, match)

    refused(run, "both have mirror=False")
    refused(_run_folder(tmp_path, ranker, data_dir=other, name="run-c"), "differ (seed)")
    refused(_run_folder(tmp_path, ranker, data_dir=there, dp=False, name="run-d"), "[train]")


@pytest.mark.slow
def test_audit_finds_a_model_that_trained_only_on_the_members(capsys, tmp_path, tiny_config):
    """A planted leak end to end: round 1's "global" model is the audited merchant's own
    non-private model, trained to over-fit; the loss attack must see it and the report
    must say so. (Multi-step training: slow.)"""
    import dataclasses

    from ecrec.data.synth import SynthConfig, synthesize, write_marketplace
    from ecrec.model.ranker import build_ranker
    from ecrec.runfolder import RunFolder
    from ecrec.train.local import TrainConfig, train_local

    market = synthesize(
        SynthConfig(merchants=2, queries_per_merchant=12, candidates_per_query=4, seed=2)
    )
    frames, data = plant_membership_audit(
        market.merchants, MembershipSetup(canaries=4, repeats=4, references=19)
    )
    data_dir = tmp_path / "data"
    write_marketplace(dataclasses.replace(market, merchants=frames), data_dir)
    write_membership(data, data_dir)
    config = dataclasses.replace(_cross_encoder(tiny_config), lora_r=16, lora_alpha=32)
    ranker = build_ranker(config, device="cpu")
    run = _run_folder(tmp_path, ranker, data_dir=data_dir, dp=False)
    # Few rows, many passes: a model that memorises (measured: AUC 0.82, CI 0.63-0.92).
    train = TrainConfig(local_steps=200, batch_size=32, learning_rate=1e-2, dp=False, seed=0)
    train_local(ranker, frames[data.merchant], config=train)
    RunFolder(run).save_checkpoint(1, ranker.adapter_state(), {})

    assert main(["privacy", "audit", str(run), "--bootstrap", "200"]) == 0
    result = json.loads((run / "privacy_audit.json").read_text())
    loss = result["attacks"]["loss"]
    assert loss["auc_ci"][0] > 0.55, loss  # a measurable leak, not a coin
    assert result["mean_loss"]["members"] < result["mean_loss"]["non_members"]
    assert (
        result["canaries"]["final"]["mean_exposure"]
        > result["canaries"]["reference"]["mean_exposure"]
    )
    assert not result["dp"] and result["members"] == len(frames[data.merchant]) - 16
    assert "no DP" in (run / "privacy_audit.md").read_text()


def test_the_report_shows_an_audit_only_when_the_run_has_one(tmp_path):
    from ecrec.report.privacy_audit import html_section, to_markdown
    from ecrec.runfolder import RunFolder

    assert html_section(tmp_path) == ""
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    signal = rng.normal(size=100) + is_member
    attack = attack_summary(signal, is_member, n_bootstrap=100)
    canaries = exposure_summary(np.full(3, 9.0), [rng.normal(size=19) for _ in range(3)])
    result = {
        "round": 3, "reference_round": 0, "merchant": "m00", "merchant_trained_rounds": [1, 2, 3],
        "dp": True, "unit": "user", "targets": "graded", "members": 50, "non_members": 50,
        "privacy": {"epsilon": 7.99, "accountant": "pld", "delta": 1e-5, "unit": "user",
                    "noise_multipliers": [1.25]},
        "mean_loss": {"members": 0.5, "non_members": 0.6},
        "attacks": {"loss": attack, "calibrated": attack},
        "canaries": {"final": canaries, "reference": canaries},
    }  # fmt: skip
    paths = RunFolder(tmp_path).write_privacy_audit(result)
    section = html_section(tmp_path)
    assert "Empirical privacy audit" in section and f"{attack['auc']:.3f}" in section
    assert "ε = 7.990 (pld, δ = 1e-05, per user), σ = 1.25" in section
    markdown = paths[1].read_text()
    assert markdown == to_markdown(result) and "| loss threshold |" in markdown
    assert f"{math.log2(20):.2f} bits" in markdown  # the canaries' maximum exposure
