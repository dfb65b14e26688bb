"""The merchant's policy checks, played by a hostile server.

Every check is a pure function of the policy and what the server sends, so each
hostile setting is one table row: the default policy refuses it with a
:class:`Violation` naming the setting, and only a policy that explicitly allows it
(or a ledger/data that makes it honest) accepts it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecrec.config import RunConfig, load_config
from ecrec.errors import ConfigError
from ecrec.node import NodePolicy, PolicyDeclined, Violation, load_policy
from ecrec.node.checks import (
    check_noise,
    check_peers,
    check_request,
    check_secagg_setup,
    check_unmask,
)
from ecrec.node.policy import policy_to_toml
from ecrec.privacy.accounting import ACCOUNTANTS

POLICY = NodePolicy()
#: What the node knows about its own data and ledger when it checks a request.
CONTEXT: dict[str, Any] = {
    "units": 1000,
    "has_user_ids": True,
    "ledger_delta": 1e-5,
    "ledger_accountant": POLICY.accountant,
}


def _request(section: str | None = None, **changes: Any) -> RunConfig:
    config = RunConfig()
    return config.replace(section, **changes) if section else config


def _check(policy: NodePolicy, request: RunConfig, **context: Any) -> list[Violation]:
    return check_request(policy, request, **{**CONTEXT, **context})


# -- check_request: the honest request -------------------------------------------------


def test_default_policy_is_the_documented_one() -> None:
    assert POLICY.accountant in ACCOUNTANTS
    assert not POLICY.allow_non_private and not POLICY.allow_server_seed
    assert POLICY.require_secagg and not POLICY.disclose_epsilon
    assert not POLICY.disclose_example_count and not POLICY.keep_sent_updates
    assert (POLICY.max_delta, POLICY.min_noise_multiplier, POLICY.min_trainers) == (1e-5, 0.5, 3)


@pytest.mark.parametrize("has_user_ids", [True, False])
def test_honest_default_config_produces_no_violation(has_user_ids: bool) -> None:
    for request in (RunConfig(), load_config()):  # dataclass defaults, embedded default.toml
        assert _check(POLICY, request, has_user_ids=has_user_ids) == []


# -- check_request: the hostile matrix -------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One thing a hostile server may ask, and the policy (or node state) that allows it."""

    name: str
    section: str
    changes: dict[str, Any]
    setting: str
    allowed_by: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    allowed_context: dict[str, Any] = field(default_factory=dict)

    def request(self) -> RunConfig:
        return _request(self.section, **self.changes)


HOSTILE = [
    Hostile("non-private", "train", {"dp": False}, "train.dp", {"allow_non_private": True}),
    # seed 0 is falsy: a truthiness test would let it through.
    Hostile("seed-0", "train", {"seed": 0}, "train.seed", {"allow_server_seed": True}),
    Hostile("seed", "train", {"seed": 12345}, "train.seed", {"allow_server_seed": True}),
    Hostile(
        "delta-0.5",
        "privacy",
        {"delta": 0.5},
        "privacy.delta",
        {"max_delta": 0.9},
        allowed_context={"units": 2},
    ),
    Hostile(
        "delta-above-1/n",
        "privacy",
        {"delta": 0.02},
        "privacy.delta",
        context={"units": 100},  # ceiling min(0.5, 1/100)
        allowed_by={"max_delta": 0.5},
        allowed_context={"units": 10},
    ),
    Hostile(
        "other-accountant",
        "privacy",
        {"accountant": "rdp"},
        "privacy.accountant",
        allowed_context={"ledger_accountant": "rdp"},
    ),
    Hostile(
        "sigma-below-floor",
        "privacy",
        {"noise_multiplier": 0.3},
        "privacy.noise-multiplier",
        {"min_noise_multiplier": 0.2},
    ),
    Hostile(
        "no-secagg", "federation", {"secagg": False}, "federation.secagg", {"require_secagg": False}
    ),
    Hostile(
        "low-threshold",
        "federation",
        {"reconstruction_threshold": 1, "num_shares": 3},
        "federation.reconstruction-threshold",
        {"min_reconstruction_threshold": 1},
    ),
    Hostile(
        "one-trainer",
        "federation",
        {"min_trainers": 1},
        "federation.min-trainers",
        {"min_trainers": 1},
    ),
    Hostile(
        "example-weighting",
        "federation",
        {"weighting": "examples", "max_weight": 1000.0},
        "federation.weighting",
        {"disclose_example_count": True},
    ),
    Hostile(
        "row-unit-on-shopper-data",
        "privacy",
        {"unit": "row"},
        "privacy.unit",
        {"unit": "row"},
    ),
    Hostile(
        "user-unit-without-shopper-ids",
        "privacy",
        {"unit": "user"},
        "privacy.unit",
        context={"has_user_ids": False},
        allowed_context={"has_user_ids": True},
    ),
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_setting_is_refused_naming_it(case: Hostile) -> None:
    violations = _check(POLICY, case.request(), **case.context)
    assert [v.setting for v in violations] == [case.setting]
    (violation,) = violations
    assert violation.reason and "\n" not in violation.reason
    assert str(violation).startswith(f"{case.setting}: ")
    assert case.setting in str(PolicyDeclined(violations))


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.name)
def test_hostile_setting_is_allowed_only_when_the_node_allows_it(case: Hostile) -> None:
    policy = dataclasses.replace(POLICY, **case.allowed_by)
    context = {**case.context, **case.allowed_context}
    assert _check(policy, case.request(), **context) == []
    if case.allowed_by and case.allowed_context:
        # Both are needed: the policy alone, or the context alone, still refuses.
        assert _check(policy, case.request(), **case.context) != []
        assert _check(POLICY, case.request(), **context) != []


def test_every_hostile_setting_at_once_is_named() -> None:
    # Rows that repeat a setting in another context are left out, and so is
    # secagg = false: without SecAgg+ there is no threshold to check.
    skip = {"delta-above-1/n", "user-unit-without-shopper-ids", "seed-0", "no-secagg"}
    cases = [case for case in HOSTILE if case.name not in skip]
    request = RunConfig()
    for case in cases:
        request = request.replace(case.section, **case.changes)
    named = [v.setting for v in _check(POLICY, request)]
    assert sorted(named) == sorted(case.setting for case in cases)


def test_delta_above_1_over_n_is_refused_even_under_a_loose_max_delta() -> None:
    loose = dataclasses.replace(POLICY, max_delta=0.5)
    (violation,) = _check(loose, _request("privacy", delta=0.02), units=100)
    assert violation.setting == "privacy.delta" and "1/100" in violation.reason
    assert _check(loose, _request("privacy", delta=0.01), units=100) == []


def test_ledger_accounting_at_a_delta_above_1_over_n_is_refused() -> None:
    # The ledger was made for more data than the node now holds.
    violations = _check(POLICY, RunConfig(), units=10_000, ledger_delta=1e-3)
    assert [v.setting for v in violations] == ["ledger delta"]
    assert "1/10000" in violations[0].reason


def test_fractional_secagg_threshold_is_left_to_the_setup_check() -> None:
    request = _request("federation", reconstruction_threshold=0.1, num_shares=1.0)
    assert _check(POLICY, request) == []  # a fraction is only known at SETUP


def test_explicit_sigma_at_the_floor_is_accepted() -> None:
    request = _request("privacy", noise_multiplier=POLICY.min_noise_multiplier)
    assert _check(POLICY, request) == []


def test_nan_sigma_is_refused() -> None:
    # NaN compares False with everything: a `sigma < floor` test would let it through.
    violations = _check(POLICY, _request("privacy", noise_multiplier=math.nan))
    assert [v.setting for v in violations] == ["privacy.noise-multiplier"]


@settings(max_examples=200, deadline=None)
@given(
    delta=st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
    units=st.integers(min_value=1, max_value=10**7),
    max_delta=st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True),
)
def test_delta_refused_iff_above_policy_ceiling_and_1_over_n(
    delta: float, units: int, max_delta: float
) -> None:
    policy = dataclasses.replace(POLICY, max_delta=max_delta)
    violations = _check(policy, _request("privacy", delta=delta), units=units, ledger_delta=1e-300)
    refused = "privacy.delta" in {v.setting for v in violations}
    assert refused == (delta > min(max_delta, 1 / units))


@settings(max_examples=100, deadline=None)
@given(
    sigma=st.floats(min_value=1e-6, max_value=100),
    floor=st.floats(min_value=0, max_value=100),
)
def test_explicit_sigma_refused_iff_below_floor(sigma: float, floor: float) -> None:
    policy = dataclasses.replace(POLICY, min_noise_multiplier=floor)
    violations = _check(policy, _request("privacy", noise_multiplier=sigma))
    assert ("privacy.noise-multiplier" in {v.setting for v in violations}) == (sigma < floor)


# -- check_noise ------------------------------------------------------------------


def test_check_noise_floor() -> None:
    floor = POLICY.min_noise_multiplier
    assert check_noise(POLICY, sigma=floor, round_epsilon=100.0) == []  # no cap by default
    (violation,) = check_noise(POLICY, sigma=floor * 0.999, round_epsilon=0.1)
    assert violation.setting == "noise multiplier" and f"{floor:g}" in violation.reason


def test_check_noise_refuses_nan() -> None:
    capped = dataclasses.replace(POLICY, max_epsilon_per_round=1.5)
    assert [v.setting for v in check_noise(POLICY, sigma=math.nan, round_epsilon=0.1)] == [
        "noise multiplier"
    ]
    assert [v.setting for v in check_noise(capped, sigma=1.0, round_epsilon=math.nan)] == [
        "epsilon per round"
    ]


def test_check_noise_epsilon_per_round_cap() -> None:
    capped = dataclasses.replace(POLICY, max_epsilon_per_round=1.5)
    assert check_noise(capped, sigma=1.0, round_epsilon=1.5) == []
    (violation,) = check_noise(capped, sigma=1.0, round_epsilon=1.5001)
    assert violation.setting == "epsilon per round" and "1.5" in violation.reason
    both = check_noise(capped, sigma=0.1, round_epsilon=2.0)
    assert [v.setting for v in both] == ["noise multiplier", "epsilon per round"]


# -- check_secagg_setup -------------------------------------------------------------

HONEST_SETUP = {"sample_num": 5, "share_num": 5, "threshold": 3, "max_weight": 1.0, "weight": 1.0}


def test_honest_secagg_setup_passes() -> None:
    assert check_secagg_setup(POLICY, **HONEST_SETUP) == []
    # The edges: exactly min-trainers nodes; max_weight exactly 1024 x the weight.
    edge = {**HONEST_SETUP, "sample_num": 3, "share_num": 3, "threshold": 2, "max_weight": 1024.0}
    assert check_secagg_setup(POLICY, **edge) == []


@pytest.mark.parametrize(
    ("changes", "setting", "needle"),
    [
        ({"sample_num": 2, "share_num": 2, "threshold": 2}, "secagg sample_num", "only 2"),
        ({"threshold": 1, "share_num": 1}, "secagg threshold", "minimum"),
        ({"sample_num": 6, "share_num": 6, "threshold": 3}, "secagg threshold", "2 x threshold"),
        ({"share_num": 6, "threshold": 4}, "secagg share_num", "6 shares for 5"),
        ({"max_weight": 10.0, "weight": 42.0}, "secagg max_weight", "overflow"),
        ({"max_weight": 1e6, "weight": 1.0}, "secagg max_weight", "erase"),
    ],
    ids=["too-few-nodes", "threshold-below-min", "disjoint-groups", "shares", "overflow", "huge"],
)
def test_hostile_secagg_setup_is_refused(changes: dict, setting: str, needle: str) -> None:
    violations = check_secagg_setup(POLICY, **{**HONEST_SETUP, **changes})
    assert [v.setting for v in violations] == [setting]
    assert needle in violations[0].reason


@settings(max_examples=200, deadline=None)
@given(
    shares=st.integers(min_value=3, max_value=200),
    threshold=st.integers(min_value=2, max_value=200),
)
def test_secagg_threshold_must_be_a_strict_majority_of_shares(shares: int, threshold: int) -> None:
    violations = check_secagg_setup(
        POLICY, sample_num=200, share_num=shares, threshold=threshold, max_weight=1, weight=1
    )
    disjoint = any("2 x threshold" in v.reason for v in violations)
    assert disjoint == (2 * threshold <= shares)


# -- check_peers and check_unmask -----------------------------------------------------


def test_check_peers() -> None:
    assert check_peers(POLICY, peers=POLICY.min_trainers) == []
    (violation,) = check_peers(POLICY, peers=POLICY.min_trainers - 1)
    assert violation.setting == "secagg peers"


def test_honest_unmask_passes() -> None:
    assert check_unmask(POLICY, node_id=1, active=[1, 2, 3], dead=[4], contributed=True) == []


@pytest.mark.parametrize(
    ("active", "dead", "contributed", "needle"),
    [
        ([1, 2, 3, 4], [4], True, "[4]"),  # both shares of node 4 would be revealed
        ([1, 2], [], True, "only 2 active"),
        ([1, 1, 1], [], True, "only 1 active"),  # duplicates are one node
        ([1, 2, 3], [], False, "sent no masked update"),
        ([2, 3, 4], [1], True, "not listed as active"),
    ],
    ids=["active-and-dead", "too-few", "duplicates", "active-without-update", "sent-but-dead"],
)
def test_hostile_unmask_is_refused(active, dead, contributed, needle) -> None:
    violations = check_unmask(POLICY, node_id=1, active=active, dead=dead, contributed=contributed)
    assert violations and all(v.setting == "secagg unmask" for v in violations)
    assert any(needle in v.reason for v in violations), violations


def test_unmask_reason_for_a_contributor_listed_as_dropped_says_it_contributed() -> None:
    (violation,) = check_unmask(POLICY, node_id=1, active=[2, 3, 4], dead=[1], contributed=True)
    assert "sent its masked update" in violation.reason  # says what happened, no contradiction
    assert "declared dropped" not in violation.reason


# -- the policy file --------------------------------------------------------------

EVERY_FIELD_CHANGED = NodePolicy(
    budget_epsilon=3.25,
    allow_non_private=True,
    max_delta=1e-7,
    accountant="rdp",
    min_noise_multiplier=0.8,
    max_epsilon_per_round=0.5,
    require_secagg=False,
    min_reconstruction_threshold=4,
    min_trainers=5,
    allow_server_seed=True,
    unit="row",
    disclose_epsilon=True,
    disclose_example_count=True,
    allowed_base_models=("tiny", "/models/ranker v2"),
    keep_sent_updates=True,
)


def test_policy_with_every_field_changed_changes_every_field() -> None:
    for f in dataclasses.fields(NodePolicy):
        assert getattr(EVERY_FIELD_CHANGED, f.name) != getattr(POLICY, f.name), f.name


@pytest.mark.parametrize("policy", [POLICY, EVERY_FIELD_CHANGED], ids=["default", "changed"])
def test_policy_file_round_trip(policy: NodePolicy, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(policy_to_toml(policy), encoding="utf-8")
    assert load_policy(path) == policy


@settings(max_examples=50, deadline=None)
@given(
    budget=st.floats(min_value=1e-3, max_value=1e3),
    max_delta=st.floats(min_value=1e-12, max_value=0.5),
    floor=st.floats(min_value=0, max_value=10),
    trainers=st.integers(min_value=1, max_value=1000),
    models=st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)),
    flags=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_policy_file_round_trip_property(
    tmp_path_factory, budget, max_delta, floor, trainers, models, flags
) -> None:
    policy = NodePolicy(
        budget_epsilon=budget,
        max_delta=max_delta,
        min_noise_multiplier=floor,
        min_trainers=trainers,
        allowed_base_models=tuple(models),
        allow_non_private=flags[0],
        require_secagg=flags[1],
        disclose_epsilon=flags[2],
    )
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_text(policy_to_toml(policy), encoding="utf-8")
    assert load_policy(path) == policy


def test_documented_example_policy_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[policy]\nbudget-epsilon = 8.0\nmax-delta = 1e-5\n"
        "min-noise-multiplier = 0.5\nmin-trainers = 3\n",
        encoding="utf-8",
    )
    assert load_policy(path) == POLICY
    path.write_text("", encoding="utf-8")
    assert load_policy(path) == POLICY  # an empty file is the default policy


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[policy]\nbudget-epsilonn = 8.0\n", ["budget-epsilonn", "unknown key"]),
        ("[policy]\nbudget_epsilon = 8.0\n", ["budget_epsilon", "kebab-case"]),
        ('[policy]\nbudget-epsilon = "eight"\n', ["budget-epsilon", "number"]),
        ("[policy]\nbudget-epsilon = true\n", ["budget-epsilon", "number"]),
        ('[policy]\nrequire-secagg = "yes"\n', ["require-secagg", "true or false"]),
        ("[policy]\nmin-trainers = 2.5\n", ["min-trainers", "integer"]),
        ('[policy]\nallowed-base-models = "tiny"\n', ["allowed-base-models", "list"]),
        ('[policy]\nunit = "shopper"\n', ["unit", "shopper"]),
        ('[policy]\naccountant = "gdp"\n', ["accountant", "gdp"]),
        ("[policy]\nbudget-epsilon = -1.0\n", ["budget-epsilon"]),
        ("[policy]\nbudget-epsilon = inf\n", ["budget-epsilon"]),
        ("[policy]\nbudget-epsilon = nan\n", ["budget-epsilon"]),
        ("[policy]\nmax-delta = 1.5\n", ["max-delta"]),
        ("[policy]\nmax-delta = nan\n", ["max-delta"]),
        ("[policy]\nmin-noise-multiplier = -0.1\n", ["min-noise-multiplier"]),
        ("[policy]\nmin-noise-multiplier = nan\n", ["min-noise-multiplier"]),
        ("[policy]\nmax-epsilon-per-round = -1.0\n", ["max-epsilon-per-round"]),
        ("[policy]\nmin-trainers = 0\n", ["min-trainers"]),
        ("[policy]\nmin-reconstruction-threshold = 0\n", ["min-reconstruction-threshold"]),
        ("[polcy]\nbudget-epsilon = 8.0\n", ["[polcy]"]),
        ("policy = 3\n", ["[policy]", "table"]),
        ("[policy]\nbudget-epsilon = \n", ["invalid TOML"]),
    ],
)
def test_bad_policy_file_is_a_one_line_error_naming_file_and_key(
    text: str, needles: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "merchant-policy.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    for needle in needles:
        assert needle in message


def test_missing_or_unreadable_policy_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        load_policy(missing)
    assert str(missing) in str(info.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[policy]")
    with pytest.raises(ConfigError) as info:
        load_policy(binary)
    assert str(binary) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"budget_epsilon": 0.0},
        {"budget_epsilon": math.inf},
        {"max_delta": 0.0},
        {"max_delta": 1.0},
        {"accountant": "gdp"},
        {"unit": "shopper"},
        {"min_trainers": 0},
    ],
)
def test_policy_refuses_bad_values_in_code_too(changes: dict) -> None:
    with pytest.raises(ConfigError, match="node policy"):
        NodePolicy(**changes)


def test_unit_and_delta_ceiling() -> None:
    assert POLICY.unit_for(has_user_ids=True) == "user"
    assert POLICY.unit_for(has_user_ids=False) == "row"
    assert NodePolicy(unit="row").unit_for(has_user_ids=True) == "row"
    assert POLICY.delta_ceiling(10) == 1e-5
    assert NodePolicy(max_delta=0.5).delta_ceiling(10) == 0.1
    assert NodePolicy(max_delta=0.5).delta_ceiling(0) == 0.5  # no units: never above 1
