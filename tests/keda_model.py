"""A model of what KEDA and the HorizontalPodAutoscaler do with one ScaledObject, replayed over a
recorded queue trace (time, {Redis key: length}) on the trace's own time axis.

What is modelled, and where each rule comes from (KEDA at kedacore/keda 8b4f083, v2.20.1-117,
2026-08-20; Kubernetes pkg/controller/podautoscaler; the pages named below):

Metric (KEDA redis scaler, ``pkg/scalers/redis_scaler.go`` lines 123-137 and 266-276)
    The scaler runs a Lua script on ``listName``: TYPE of the key, then ZCARD for a zset, SCARD for
    a set, HLEN for a hash, LLEN for a list or a missing key. So a Dramatiq ``<queue>.msgs`` hash
    gives its number of fields. The value goes to the HPA as an external metric; the trigger is
    active when ``length > activationListLength`` (line 276). ``listLength`` (default 5) is the
    HPA target; its type is ``AverageValue`` unless ``metricType`` says otherwise
    (``pkg/scalers/scaler.go`` GetMetricTargetType). Hand-made equivalent: ``KEDA_LENGTH_LUA``.

Activity, 0 <-> 1 replicas (KEDA ``pkg/scaling/executor/scale_scaledobjects.go``, RequestScale,
scaleToZeroOrIdle, scaleFromZeroOrIdle; ``pkg/scaling/scale_handler.go`` ~line 938)
    Every ``pollingInterval`` (default 30 s) KEDA asks every trigger; the ScaledObject is active
    if ANY trigger is. Active with 0 replicas: set ``max(minReplicaCount, 1)`` replicas and record
    lastActiveTime. Active otherwise: record lastActiveTime. Inactive with replicas > 0 and
    ``minReplicaCount == 0``: scale to 0 only when ``lastActiveTime + cooldownPeriod`` (default
    300 s) is past (line 213), else keep "cooling down". Docs: https://keda.sh/docs/latest/reference/scaledobject-spec
    ("cooldownPeriod: the period to wait after the last trigger reported active before scaling
    the resource back to 0"), https://keda.sh/docs/latest/concepts/scaling-deployments/.

1 <-> N replicas: the HPA KEDA creates (``controllers/keda/hpa.go``; minReplicas is
``max(minReplicaCount, 1)``, ``apis/keda/v1alpha1/scaledobject_types.go`` GetHPAMinReplicas)
    Every sync period (kube-controller-manager default 15 s) for each metric with an AverageValue
    target: ``ratio = metric / (target * current)``; if ``|1 - ratio| > tolerance`` (default 0.1)
    the proposal is ``ceil(metric / target)``, else ``current``
    (``replica_calculator.go`` GetExternalPerPodMetricReplicas). With several metrics the largest
    proposal wins ("the maximum replica count across all metrics will be used", HPA spec docs).
    A target at 0 replicas with minReplicas != 0 is left alone ("ScalingDisabled"): KEDA alone
    leaves 0. Below minReplicas: set to minReplicas; above maxReplicas: set to maxReplicas.
    With ``behavior`` (``horizontal.go`` stabilizeRecommendationWithBehaviors and
    convertDesiredReplicasWithBehaviorRate): up-limit = the LOWEST recommendation of the last
    scaleUp.stabilizationWindowSeconds, down-limit = the HIGHEST of the last
    scaleDown.stabilizationWindowSeconds (both including this one); the new count is the current
    one moved just enough to lie within [up-limit, down-limit]. Then the rate policies: for each
    policy, the count at the start of its ``periodSeconds`` (current minus/plus the changes made in
    that period) plus/minus ``value`` pods or percent (percent up rounds up, down truncates);
    selectPolicy Max takes the policy allowing the biggest change, Min the smallest, Disabled
    none; the result is clamped to [minReplicas, maxReplicas]. Defaults when a field is missing
    (https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#default-behavior):
    scaleUp window 0 s, policies 100 % and 4 pods per 15 s, Max; scaleDown window 300 s, 100 %
    per 15 s. Without ``behavior`` at all (the legacy path, ``normalizeDesiredReplicas``): the
    highest recommendation of the last 300 s, scale-up at most to ``max(2 * current, 4)``.
    The KEP with the window algorithm: kubernetes/enhancements keps/sig-autoscaling/853.

Not modelled: pod start-up and readiness (the HPA counts ``spec.replicas``, which an AverageValue
external metric does not divide by ready pods), fallback, idleReplicaCount, scalingModifiers,
cached metrics, CPU/memory triggers. The model is open loop: the trace was recorded with the
workers the test ran, so it says what KEDA and the HPA would have asked for, not how the queue
would have moved under that many pods.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

HPA_SYNC_PERIOD_S = 15.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period
HPA_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
LEGACY_DOWNSCALE_WINDOW_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization

KEDA_DEFAULT_POLLING_S = 30.0
KEDA_DEFAULT_COOLDOWN_S = 300.0
KEDA_DEFAULT_MAX_REPLICAS = 100
KEDA_REDIS_DEFAULT_LIST_LENGTH = 5

#: The length KEDA's redis scaler reads for each key (KEYS), by the key's type, in one atomic
#: step: written here from the rule in redis_scaler.go, not copied.
KEDA_LENGTH_LUA = """
local lengths = {}
for i, key in ipairs(KEYS) do
    local kind = redis.call('TYPE', key)['ok']
    if kind == 'hash' then lengths[i] = redis.call('HLEN', key)
    elseif kind == 'list' or kind == 'none' then lengths[i] = redis.call('LLEN', key)
    elseif kind == 'set' then lengths[i] = redis.call('SCARD', key)
    elseif kind == 'zset' then lengths[i] = redis.call('ZCARD', key)
    else return redis.error_reply('KEDA reads no length from a ' .. kind .. ': ' .. key) end
end
return lengths
"""


def keda_lengths(client, keys: Sequence[str]) -> dict[str, int]:
    """What KEDA's redis scaler would read for each key right now (one atomic snapshot)."""
    values = client.eval(KEDA_LENGTH_LUA, len(keys), *keys)
    return {key: int(value) for key, value in zip(keys, values)}


@dataclass(frozen=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_s: float


@dataclass(frozen=True)
class Rules:
    stabilization_s: float
    policies: tuple[Policy, ...]
    select: str = "Max"  # Max, Min or Disabled


DEFAULT_SCALE_UP = Rules(0.0, (Policy("Percent", 100, 15.0), Policy("Pods", 4, 15.0)), "Max")
DEFAULT_SCALE_DOWN = Rules(300.0, (Policy("Percent", 100, 15.0),), "Max")


@dataclass(frozen=True)
class Trigger:
    key: str  # listName
    target: int  # listLength: AverageValue per replica
    activation: int = 0  # activationListLength


@dataclass(frozen=True)
class ScaledObjectModel:
    name: str
    triggers: tuple[Trigger, ...]
    min_replicas: int = 0
    max_replicas: int = KEDA_DEFAULT_MAX_REPLICAS
    polling_s: float = KEDA_DEFAULT_POLLING_S
    cooldown_s: float = KEDA_DEFAULT_COOLDOWN_S
    #: (scaleUp, scaleDown) of advanced.horizontalPodAutoscalerConfig.behavior; None: legacy HPA
    behavior: tuple[Rules, Rules] | None = None

    @property
    def hpa_min(self) -> int:
        return max(self.min_replicas, 1)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in self.triggers)

    @classmethod
    def from_manifest(cls, doc: Mapping) -> ScaledObjectModel:
        """From a rendered ScaledObject; refuses what the model does not cover."""
        if doc.get("kind") != "ScaledObject":
            raise ValueError(f"not a ScaledObject: {doc.get('kind')}")
        spec = doc["spec"]
        advanced = spec.get("advanced") or {}
        for unsupported in ("idleReplicaCount", "fallback"):
            if unsupported in spec:
                raise NotImplementedError(f"the model has no {unsupported}")
        if advanced.get("scalingModifiers"):
            raise NotImplementedError("the model has no scalingModifiers")
        triggers = []
        for trig in spec["triggers"]:
            if trig["type"] not in ("redis", "redis-cluster", "redis-sentinel"):
                raise NotImplementedError(f"the model has no {trig['type']} trigger")
            if trig.get("metricType", "AverageValue") != "AverageValue":
                raise NotImplementedError(f"the model has no metricType {trig['metricType']}")
            md = trig["metadata"]
            triggers.append(Trigger(key=md["listName"],
                                    target=int(md.get("listLength", KEDA_REDIS_DEFAULT_LIST_LENGTH)),
                                    activation=int(md.get("activationListLength", 0))))
        behavior = (advanced.get("horizontalPodAutoscalerConfig") or {}).get("behavior")
        return cls(
            name=doc["metadata"]["name"],
            triggers=tuple(triggers),
            min_replicas=int(spec.get("minReplicaCount", 0)),
            max_replicas=int(spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS)),
            polling_s=float(spec.get("pollingInterval", KEDA_DEFAULT_POLLING_S)),
            cooldown_s=float(spec.get("cooldownPeriod", KEDA_DEFAULT_COOLDOWN_S)),
            behavior=None if behavior is None else (
                _rules(behavior.get("scaleUp"), DEFAULT_SCALE_UP),
                _rules(behavior.get("scaleDown"), DEFAULT_SCALE_DOWN),
            ),
        )


def _rules(raw: Mapping | None, default: Rules) -> Rules:
    """HPAScalingRules with the API server's defaults for missing fields."""
    if raw is None:
        return default
    policies = tuple(Policy(p["type"], int(p["value"]), float(p["periodSeconds"])) for p in raw.get("policies") or ())
    return Rules(
        stabilization_s=float(raw.get("stabilizationWindowSeconds", default.stabilization_s)),
        policies=policies or default.policies,
        select=raw.get("selectPolicy", "Max"),
    )


class Trace:
    """Samples (t, {key: length}) in time order; the value at t is the last sample at or before t
    (the first before the first, the last after the last: hold, which is only right when Redis
    does not change after the recording ends)."""

    def __init__(self, samples: Sequence[tuple[float, Mapping[str, int]]]):
        if not samples:
            raise ValueError("an empty trace")
        self.samples = sorted(samples, key=lambda s: s[0])
        self._times = [t for t, _ in self.samples]

    @property
    def start(self) -> float:
        return self._times[0]

    @property
    def end(self) -> float:
        return self._times[-1]

    def at(self, t: float) -> Mapping[str, int]:
        i = bisect.bisect_right(self._times, t) - 1
        return self.samples[max(i, 0)][1]

    def until(self, t: float) -> Trace:
        return Trace([s for s in self.samples if s[0] <= t])


@dataclass
class Decision:
    t: float
    by: str  # "keda" or "hpa"
    replicas: int  # after this decision
    metrics: dict[str, int]
    active: bool | None = None  # KEDA's activity (KEDA decisions only)


@dataclass
class _Hpa:
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)


def replay(so: ScaledObjectModel, metrics_at: Callable[[float], Mapping[str, int]], *, start: float, end: float,
           first_poll: float, first_hpa_sync: float, replicas: int = 0,
           hpa_sync_s: float = HPA_SYNC_PERIOD_S, tolerance: float = HPA_TOLERANCE) -> list[Decision]:
    """KEDA polls at first_poll + k * pollingInterval and the HPA syncs at first_hpa_sync + k * 15 s,
    for times in [start, end]; returns every decision in time order (KEDA first on a tie)."""
    events = []
    for order, (first, period, by) in enumerate(((first_poll, so.polling_s, "keda"),
                                                  (first_hpa_sync, hpa_sync_s, "hpa"))):
        k = 0
        while (t := first + k * period) <= end:
            if t >= start:
                events.append((t, order, by))
            k += 1
    events.sort()
    hpa = _Hpa()
    last_active: float | None = None
    decisions: list[Decision] = []
    for t, _, by in events:
        metrics = {k: int(metrics_at(t).get(k, 0)) for k in so.keys}
        if by == "keda":
            active = any(metrics[trig.key] > trig.activation for trig in so.triggers)
            if active:
                if replicas == 0:
                    replicas = so.hpa_min
                last_active = t
            elif replicas > 0 and so.min_replicas == 0:
                # lastActiveTime nil: the ScaledObject was created long before the trace
                if last_active is None or last_active + so.cooldown_s < t:
                    replicas = 0
            elif replicas < so.min_replicas:
                replicas = so.min_replicas
            decisions.append(Decision(t, by, replicas, metrics, active))
        else:
            replicas = _hpa_sync(so, hpa, t, replicas, metrics, tolerance)
            decisions.append(Decision(t, by, replicas, metrics))
    return decisions


def _hpa_sync(so: ScaledObjectModel, hpa: _Hpa, t: float, current: int, metrics: Mapping[str, int],
              tolerance: float) -> int:
    if not hpa.recommendations:  # recordInitialRecommendation
        hpa.recommendations.append((t, current))
    if current == 0:  # minReplicas >= 1 here: "ScalingDisabled", KEDA owns 0 <-> 1
        return 0
    if current > so.max_replicas:
        desired = so.max_replicas
    elif current < so.hpa_min:
        desired = so.hpa_min
    else:
        proposals = []
        for trig in so.triggers:
            usage = metrics[trig.key]
            ratio = usage / (trig.target * current)
            proposals.append(current if abs(1.0 - ratio) <= tolerance else math.ceil(usage / trig.target))
        desired = max(proposals)
        if so.behavior is None:
            desired = _legacy_normalize(so, hpa, t, current, desired)
        else:
            desired = _behavior_normalize(so, hpa, t, current, desired)
    if so.behavior is not None and desired != current:  # storeScaleEvent
        if desired > current:
            hpa.up_events.append((t, desired - current))
        else:
            hpa.down_events.append((t, current - desired))
    return desired


def _legacy_normalize(so: ScaledObjectModel, hpa: _Hpa, t: float, current: int, desired: int) -> int:
    stabilized = max([desired] + [r for ts, r in hpa.recommendations if ts >= t - LEGACY_DOWNSCALE_WINDOW_S])
    hpa.recommendations.append((t, desired))
    upper = min(so.max_replicas, max(2 * current, 4))
    return max(so.hpa_min, min(stabilized, upper))


def _behavior_normalize(so: ScaledObjectModel, hpa: _Hpa, t: float, current: int, desired: int) -> int:
    up_rules, down_rules = so.behavior
    up_limit = min([desired] + [r for ts, r in hpa.recommendations if ts > t - up_rules.stabilization_s])
    down_limit = max([desired] + [r for ts, r in hpa.recommendations if ts > t - down_rules.stabilization_s])
    hpa.recommendations.append((t, desired))
    recommendation = min(max(current, up_limit), down_limit)
    if recommendation > current:
        limit = max(_scale_up_limit(current, hpa.up_events, up_rules, t), current)
        return min(recommendation, so.max_replicas, limit)
    if recommendation < current:
        limit = min(_scale_down_limit(current, hpa.down_events, down_rules, t), current)
        return max(recommendation, so.hpa_min, limit)
    return recommendation


def _changed_within(events: list[tuple[float, int]], period_s: float, t: float) -> int:
    return sum(change for ts, change in events if ts > t - period_s)


def _scale_up_limit(current: int, events: list[tuple[float, int]], rules: Rules, t: float) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        base = current - _changed_within(events, p.period_s, t)
        proposals.append(base + p.value if p.kind == "Pods" else math.ceil(base * (1 + p.value / 100)))
    return min(proposals) if rules.select == "Min" else max(proposals)


def _scale_down_limit(current: int, events: list[tuple[float, int]], rules: Rules, t: float) -> int:
    if rules.select == "Disabled":
        return current
    proposals = []
    for p in rules.policies:
        base = current + _changed_within(events, p.period_s, t)
        proposals.append(base - p.value if p.kind == "Pods" else int(base * (1 - p.value / 100)))
    return max(proposals) if rules.select == "Min" else min(proposals)


def replicas_at(decisions: Sequence[Decision], t: float, initial: int = 0) -> int:
    """The replica count in force at time t."""
    replicas = initial
    for d in decisions:
        if d.t > t:
            break
        replicas = d.replicas
    return replicas
