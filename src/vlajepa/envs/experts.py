"""The scripted demonstrators: MetaWorld's experts, aimed where each task measures success.

MetaWorld's ``reach-v3`` expert steers the hand body (``obs[:3]``) to the goal, but ``reach-v3`` scores the
fingertip centre (``tcp_center``), which hangs 4.5 cm below the hand: at the expert's target the fingertips are
4.5 cm from the goal, inside the 5 cm success radius by half a centimetre. Its demonstrations end as the fingertips
cross the edge of the success ball, so a policy that imitates them with a centimetre of error, or stops a little
short, fails although it went where the expert went. Here the reach expert steers the fingertip centre itself to the
goal (the hand to ``goal - (tcp_center - hand)``), which ends its demonstrations aimed at the middle of the ball, as
``reach-v3``'s own reward intends. The other experts are MetaWorld's unchanged (pick-place also carries the object a
few centimetres below the hand but scores it with a 7 cm radius).

:data:`EXPERT_REVISION` identifies this set of demonstrators in a dataset's provenance, so data recorded with
other ones can be recognised and refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EXPERT_REVISION = 2  # 1: MetaWorld's experts unchanged; 2: reach-v3 steers the fingertip centre to the goal
TCP_AIMED_TASKS: frozenset[str] = frozenset({"reach-v3"})  # tasks whose success is the fingertips' distance to the goal


def expert_observation(task: str, raw_obs: np.ndarray, tcp_offset: np.ndarray) -> np.ndarray:
    """The observation to hand MetaWorld's expert for ``task``: a copy of ``raw_obs`` (some experts edit it in
    place), with the goal moved by ``-tcp_offset`` for :data:`TCP_AIMED_TASKS`, so that steering the hand to the
    moved goal brings the fingertip centre (``hand + tcp_offset``) to the real one."""
    obs = np.array(raw_obs, dtype=np.float64, copy=True)
    if task in TCP_AIMED_TASKS:
        obs[-3:] = obs[-3:] - np.asarray(tcp_offset, dtype=np.float64)
    return obs


def expert_provenance() -> dict[str, Any]:
    """The demonstrators' entry in a dataset's provenance."""
    return {
        "revision": EXPERT_REVISION,
        "policies": "metaworld.policies",
        "fingertip_aimed_tasks": sorted(TCP_AIMED_TASKS),
    }
