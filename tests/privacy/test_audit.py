"""The empirical privacy audit: attack statistics, audit-ready data, ``ecrec privacy audit``.

The statistics are checked against sklearn and brute force, on random scores (AUC near
0.5) and on a planted perfect leak (AUC 1); the data split against its promises
(disjoint shoppers, nothing lost, canaries only in training); the command against
missing and broken run folders (one line, non-zero exit). The one test that trains a
ranker is marked slow.
"""

from __future__ import annotations

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


# --------------------------------------------------------------------------- the command


def _audit(capsys, run: Path) -> tuple[int, str]:
    code = main(["privacy", "audit", str(run), "--bootstrap", "50"])
    return code, capsys.readouterr().err


def _one_line_error(code: int, err: str, match: str) -> None:
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and match in lines[0], err


def _run_folder(tmp_path: Path, ranker, *, data_dir: Path, dp: bool = True) -> Path:
    """A run folder as the server writes it: config, round 0 and 1 checkpoints."""
    from ecrec.config import RunConfig
    from ecrec.runfolder import RunFolder

    config = RunConfig().replace("data", dir=str(data_dir)).replace("model", **_tiny(ranker))
    config = config.replace("train", dp=dp)
    run = RunFolder(tmp_path / "run")
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
