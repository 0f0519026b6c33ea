"""Natural-language instructions for the 50 MetaWorld v3 tasks.

MetaWorld has no language, so every task gets

* a **canonical** instruction (what clean evaluation uses),
* at least five **train** paraphrases (language augmentation while training; collected demonstrations are captioned
  with the canonical instruction and these in turn, see :func:`training_caption`), and
* at least three **held-out** paraphrases, disjoint from the above, used only by the ``language`` perturbation
  to test whether a policy understands the instruction rather than memorising one string.

Held-out phrasings deliberately change vocabulary and sentence shape (questions, polite requests, descriptions
of the end state) while keeping the meaning, the way LIBERO-Plus rewrites instructions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from vlajepa.envs.tasks import resolve_task

Split = Literal["canonical", "train", "heldout"]


@dataclass(frozen=True)
class TaskLanguage:
    """The instructions of one task."""

    canonical: str  # the default instruction
    train: tuple[str, ...]  # paraphrases that training may sample from
    heldout: tuple[str, ...]  # paraphrases never shown in training (language perturbation only)


def _lang(canonical: str, train: tuple[str, ...], heldout: tuple[str, ...]) -> TaskLanguage:
    return TaskLanguage(canonical=canonical, train=train, heldout=heldout)


LANGUAGE: dict[str, TaskLanguage] = {
    "assembly-v3": _lang(
        "put the nut on the peg",
        (
            "pick up the nut and place it onto the peg",
            "slide the ring nut down over the peg",
            "grab the green nut by its handle and fit it onto the peg",
            "assemble the nut onto the peg",
            "move the nut over the peg and drop it on",
        ),
        (
            "thread the ring over the upright post",
            "could you mount the nut on that peg?",
            "the nut should end up around the peg",
        ),
    ),
    "basketball-v3": _lang(
        "dunk the ball into the basket",
        (
            "pick up the ball and put it through the hoop",
            "grab the basketball and dunk it",
            "lift the ball and drop it into the hoop",
            "score by placing the ball in the basket",
            "take the orange ball and slam it through the ring",
        ),
        (
            "shoot a basket with the ball",
            "make the ball go through the net",
            "can you get the ball into the hoop?",
        ),
    ),
    "bin-picking-v3": _lang(
        "move the puck from one bin to the other",
        (
            "pick the puck out of the red bin and place it in the blue bin",
            "transfer the puck into the other bin",
            "grab the puck and drop it into the second bin",
            "take the block from the left bin and put it in the right one",
            "relocate the puck to the empty bin",
        ),
        (
            "the puck belongs in the blue container",
            "shift the item across to the neighbouring tray",
            "please carry the disc over to the other box",
        ),
    ),
    "box-close-v3": _lang(
        "close the box with its lid",
        (
            "pick up the lid and put it on the box",
            "place the lid on top of the box",
            "cover the box with the lid",
            "grab the lid by its handle and close the box",
            "put the cover onto the box",
        ),
        (
            "shut the container by setting its top on it",
            "the box should end up covered",
            "would you pop the lid back on?",
        ),
    ),
    "button-press-topdown-v3": _lang(
        "press the button from the top",
        (
            "push the button down from above",
            "press down on the red button",
            "hit the button from overhead",
            "move above the button and push it down",
            "press the top button",
        ),
        (
            "depress the switch vertically",
            "click the red knob downward",
            "can you poke the button straight down?",
        ),
    ),
    "button-press-topdown-wall-v3": _lang(
        "press the button from the top behind the wall",
        (
            "push the button down from above, past the wall",
            "reach over the wall and press the button down",
            "press down on the button that is behind the wall",
            "go around the wall and push the button from above",
            "hit the button from overhead without touching the wall",
        ),
        (
            "depress the switch vertically on the far side of the barrier",
            "clear the low barrier and click the knob downward",
            "could you push that walled-off button down?",
        ),
    ),
    "button-press-v3": _lang(
        "press the button",
        (
            "push the button forward",
            "press the button on the front of the box",
            "push in the red button",
            "move forward and press the button",
            "hit the button with the gripper",
        ),
        (
            "poke the switch on the panel",
            "activate the push switch",
            "can you jab the button horizontally?",
        ),
    ),
    "button-press-wall-v3": _lang(
        "press the button behind the wall",
        (
            "push the button that is behind the wall",
            "go around the wall and press the button",
            "reach past the wall and push the button in",
            "press the button without hitting the wall",
            "bypass the wall and push the button forward",
        ),
        (
            "poke the switch hidden past the barrier",
            "activate the push switch on the far side of the partition",
            "could you get around the wall and jab that button?",
        ),
    ),
    "coffee-button-v3": _lang(
        "press the button on the coffee machine",
        (
            "push the coffee machine button",
            "start the coffee machine",
            "press the button of the espresso machine",
            "hit the switch on the coffee maker",
            "push the button to brew coffee",
        ),
        (
            "turn on the coffee maker",
            "make the machine pour a coffee",
            "can you switch the espresso maker on?",
        ),
    ),
    "coffee-pull-v3": _lang(
        "pull the mug out of the coffee machine",
        (
            "take the mug away from the coffee machine",
            "grab the cup and pull it toward you",
            "slide the mug out from under the coffee maker",
            "pull the coffee cup back",
            "retrieve the mug from the machine",
        ),
        (
            "fetch the cup from beneath the spout",
            "bring the drink back from the espresso maker",
            "the mug should no longer be under the machine",
        ),
    ),
    "coffee-push-v3": _lang(
        "push the mug under the coffee machine",
        (
            "slide the mug into the coffee machine",
            "grab the cup and move it under the spout",
            "put the mug beneath the coffee maker",
            "push the coffee cup forward into the machine",
            "place the mug under the espresso machine",
        ),
        (
            "get the cup ready to be filled",
            "position the mug below where the coffee pours",
            "could you set the cup under the brewer?",
        ),
    ),
    "dial-turn-v3": _lang(
        "turn the dial",
        (
            "rotate the dial",
            "twist the knob around",
            "spin the dial half a turn",
            "turn the knob on the box",
            "rotate the round dial with the gripper",
        ),
        (
            "give the rotary control a twist",
            "crank the selector around",
            "can you wind the knob?",
        ),
    ),
    "disassemble-v3": _lang(
        "take the nut off the peg",
        (
            "pick the nut up off the peg",
            "lift the ring nut away from the peg",
            "remove the nut from the peg",
            "grab the nut by its handle and pull it off the peg",
            "disassemble the nut from the peg",
        ),
        (
            "unthread the ring from the upright post",
            "the peg should end up bare",
            "could you free the nut from that peg?",
        ),
    ),
    "door-close-v3": _lang(
        "close the door",
        (
            "push the door shut",
            "swing the door closed",
            "shut the cabinet door",
            "move the door until it is closed",
            "close the open door of the safe",
        ),
        (
            "the door should end up shut",
            "swing the hinged panel back into its frame",
            "could you shut that door for me?",
        ),
    ),
    "door-lock-v3": _lang(
        "lock the door",
        (
            "turn the lock on the door",
            "rotate the door lock down",
            "push the lock lever to lock the door",
            "secure the door with its lock",
            "turn the knob to lock the safe",
        ),
        (
            "bolt the door",
            "make sure the door cannot be opened",
            "can you engage the latch?",
        ),
    ),
    "door-open-v3": _lang(
        "open the door",
        (
            "pull the door open",
            "swing the door open by its handle",
            "grab the handle and open the door",
            "open the door of the safe",
            "pull the cabinet door open",
        ),
        (
            "the door should end up open",
            "swing the hinged panel out of its frame",
            "could you open that door for me?",
        ),
    ),
    "door-unlock-v3": _lang(
        "unlock the door",
        (
            "turn the lock to unlock the door",
            "rotate the door lock up",
            "push the lock lever to unlock the door",
            "release the lock on the door",
            "turn the knob to unlock the safe",
        ),
        (
            "unbolt the door",
            "make the door free to open",
            "can you disengage the latch?",
        ),
    ),
    "hand-insert-v3": _lang(
        "insert the gripper into the hole",
        (
            "put your hand into the hole",
            "move the gripper down into the hole in the table",
            "place the hand inside the hole",
            "reach into the hole",
            "lower the gripper into the opening",
        ),
        (
            "stick the claw into the gap",
            "dip the end effector into the cavity",
            "could you poke your fingers into that hole?",
        ),
    ),
    "drawer-close-v3": _lang(
        "close the drawer",
        (
            "push the drawer shut",
            "slide the drawer closed",
            "push the drawer back in",
            "shut the open drawer",
            "close the green drawer",
        ),
        (
            "the drawer should end up flush",
            "tuck the sliding compartment back in",
            "can you shove the drawer in?",
        ),
    ),
    "drawer-open-v3": _lang(
        "open the drawer",
        (
            "pull the drawer open",
            "slide the drawer out",
            "grab the handle and pull out the drawer",
            "open the green drawer",
            "pull the drawer toward you",
        ),
        (
            "the drawer should end up pulled out",
            "draw the sliding compartment outward",
            "can you yank the drawer open?",
        ),
    ),
    "faucet-open-v3": _lang(
        "open the faucet",
        (
            "turn the faucet on",
            "rotate the faucet handle to open it",
            "turn on the tap",
            "swing the faucet handle open",
            "open the water tap",
        ),
        (
            "let the water run",
            "twist the spigot to the open position",
            "could you start the tap?",
        ),
    ),
    "faucet-close-v3": _lang(
        "close the faucet",
        (
            "turn the faucet off",
            "rotate the faucet handle to close it",
            "turn off the tap",
            "swing the faucet handle closed",
            "close the water tap",
        ),
        (
            "stop the water from running",
            "twist the spigot to the shut position",
            "could you shut the tap?",
        ),
    ),
    "hammer-v3": _lang(
        "hammer the nail into the wall",
        (
            "pick up the hammer and hit the nail",
            "use the hammer to drive in the nail",
            "grab the hammer and knock the nail in",
            "hammer the peg into the box",
            "strike the nail with the hammer",
        ),
        (
            "pound the pin flush using the mallet",
            "drive the spike home with the tool",
            "can you tap that nail in with the hammer?",
        ),
    ),
    "handle-press-side-v3": _lang(
        "press the handle down from the side",
        (
            "push the side handle down",
            "press down on the handle from the side",
            "push the lever on the side down",
            "move to the side and press the handle",
            "press the sideways handle down",
        ),
        (
            "lower the side grip",
            "force the lateral handle to the bottom",
            "could you push that side lever downward?",
        ),
    ),
    "handle-press-v3": _lang(
        "press the handle down",
        (
            "push the handle down",
            "press down on the handle",
            "push the lever down",
            "move above the handle and press it",
            "lower the handle by pressing it",
        ),
        (
            "bring the grip all the way down",
            "force the handle to the bottom",
            "can you push that lever downward?",
        ),
    ),
    "handle-pull-side-v3": _lang(
        "pull the handle up from the side",
        (
            "lift the side handle up",
            "pull up on the handle from the side",
            "raise the lever on the side",
            "move to the side and pull the handle up",
            "pull the sideways handle upward",
        ),
        (
            "raise the lateral grip",
            "bring the side lever to the top",
            "could you hoist that side handle?",
        ),
    ),
    "handle-pull-v3": _lang(
        "pull the handle up",
        (
            "lift the handle up",
            "pull up on the handle",
            "raise the lever",
            "grab the handle and pull it upward",
            "bring the handle up",
        ),
        (
            "hoist the grip to the top",
            "the handle should end up raised",
            "can you yank that lever upward?",
        ),
    ),
    "lever-pull-v3": _lang(
        "pull the lever up",
        (
            "lift the lever",
            "raise the lever arm",
            "rotate the lever upward",
            "push the lever up from below",
            "swing the lever up",
        ),
        (
            "flip the arm to its raised position",
            "the lever should end up pointing up",
            "could you crank the lever upward?",
        ),
    ),
    "pick-place-wall-v3": _lang(
        "pick up the puck and place it at the goal behind the wall",
        (
            "grab the puck, lift it over the wall and put it at the target",
            "move the puck past the wall to the goal",
            "pick the puck up and set it down behind the wall",
            "carry the puck over the wall to the goal position",
            "lift the block over the wall and place it at the target",
        ),
        (
            "transport the disc across the barrier to the marked spot",
            "hop the object over the partition onto its target",
            "could you bring the puck around the wall to the goal?",
        ),
    ),
    "pick-out-of-hole-v3": _lang(
        "pick the puck out of the hole",
        (
            "lift the puck out of the hole",
            "grab the puck from the hole and raise it to the goal",
            "take the puck out of the hole",
            "pull the puck up out of the hole",
            "retrieve the puck from the hole",
        ),
        (
            "fish the disc out of the cavity",
            "the puck should no longer be in the hole",
            "could you extract the object from that gap?",
        ),
    ),
    "pick-place-v3": _lang(
        "pick up the puck and place it at the goal",
        (
            "grab the puck and put it at the target",
            "lift the puck and move it to the goal",
            "pick the puck up and set it down at the goal position",
            "carry the puck to the target location",
            "take the red puck and place it on the goal",
        ),
        (
            "transport the disc to the marked spot",
            "relocate the object to where the target is",
            "could you move that puck over to the goal?",
        ),
    ),
    "plate-slide-v3": _lang(
        "slide the plate into the cabinet",
        (
            "push the plate into the goal",
            "slide the plate forward into the net",
            "push the plate into the cabinet",
            "move the plate forward into the frame",
            "slide the dish into the slot",
        ),
        (
            "shove the platter into the rack",
            "the plate should end up inside the cabinet",
            "could you glide the dish into its slot?",
        ),
    ),
    "plate-slide-side-v3": _lang(
        "slide the plate sideways into the cabinet",
        (
            "push the plate sideways into the goal",
            "slide the plate to the side into the net",
            "push the plate into the cabinet from the side",
            "move the plate sideways into the frame",
            "slide the dish to the side into the slot",
        ),
        (
            "shove the platter laterally into the rack",
            "the plate should end up in the cabinet on the side",
            "could you glide the dish sideways into its slot?",
        ),
    ),
    "plate-slide-back-v3": _lang(
        "slide the plate back out of the cabinet",
        (
            "pull the plate out of the goal",
            "slide the plate back toward you",
            "take the plate out of the cabinet",
            "pull the plate backward out of the net",
            "slide the dish out of the slot",
        ),
        (
            "draw the platter out of the rack",
            "the plate should end up outside the cabinet",
            "could you bring the dish back out?",
        ),
    ),
    "plate-slide-back-side-v3": _lang(
        "slide the plate sideways out of the cabinet",
        (
            "pull the plate out of the goal from the side",
            "slide the plate sideways out of the net",
            "take the plate out of the cabinet to the side",
            "pull the plate out sideways",
            "slide the dish out of the slot to the side",
        ),
        (
            "draw the platter laterally out of the rack",
            "the plate should end up beside the cabinet",
            "could you bring the dish sideways out?",
        ),
    ),
    "peg-insert-side-v3": _lang(
        "insert the peg into the hole from the side",
        (
            "pick up the peg and push it sideways into the hole",
            "grab the peg and insert it into the box",
            "put the peg into the hole on the side",
            "slide the peg into the hole",
            "plug the green peg into the hole",
        ),
        (
            "fit the rod horizontally into the socket",
            "thread the stick through the opening",
            "could you plug that peg into the block?",
        ),
    ),
    "peg-unplug-side-v3": _lang(
        "unplug the peg from the side",
        (
            "pull the peg out of the hole sideways",
            "grab the peg and pull it out",
            "remove the peg from the box",
            "unplug the peg",
            "slide the peg out of the hole",
        ),
        (
            "extract the rod horizontally from the socket",
            "the peg should end up out of its hole",
            "could you yank that plug out?",
        ),
    ),
    "soccer-v3": _lang(
        "kick the ball into the goal",
        (
            "push the soccer ball into the net",
            "shoot the ball into the goal",
            "move the ball into the goal",
            "score a goal with the ball",
            "nudge the soccer ball into the net",
        ),
        (
            "get the football past the goal line",
            "the ball should end up in the net",
            "could you knock that ball into the goal?",
        ),
    ),
    "stick-push-v3": _lang(
        "push the box with the stick",
        (
            "grab the stick and use it to push the thermos",
            "pick up the stick and push the container forward",
            "use the stick to shove the bottle to the goal",
            "take the stick and push the thermos with it",
            "hold the stick and slide the container away",
        ),
        (
            "use the rod as a tool to shove the flask",
            "with the stick in hand, nudge the canister to the target",
            "could you poke the bottle along using the stick?",
        ),
    ),
    "stick-pull-v3": _lang(
        "pull the box with the stick",
        (
            "grab the stick and use it to pull the thermos",
            "pick up the stick and drag the container",
            "use the stick to pull the bottle to the goal",
            "take the stick and pull the thermos with it",
            "hook the container with the stick and pull it",
        ),
        (
            "use the rod as a tool to drag the flask",
            "with the stick in hand, haul the canister to the target",
            "could you tug the bottle over using the stick?",
        ),
    ),
    "push-v3": _lang(
        "push the puck to the goal",
        (
            "slide the puck to the target",
            "push the puck across the table to the goal",
            "move the puck to the goal by pushing it",
            "shove the red puck to the target position",
            "push the block to the goal",
        ),
        (
            "nudge the disc along the surface to the marked spot",
            "the puck should end up on the target",
            "could you slide that object over to the goal?",
        ),
    ),
    "push-wall-v3": _lang(
        "push the puck to the goal behind the wall",
        (
            "slide the puck around the wall to the target",
            "push the puck past the wall to the goal",
            "move the puck around the wall by pushing it",
            "shove the puck past the wall to the target position",
            "push the block around the wall to the goal",
        ),
        (
            "nudge the disc past the barrier to the marked spot",
            "steer the object around the partition onto its target",
            "could you slide that puck around the wall to the goal?",
        ),
    ),
    "push-back-v3": _lang(
        "pull the puck back to the goal",
        (
            "slide the puck back toward you to the target",
            "drag the puck backward to the goal",
            "pull the puck across the table to the goal",
            "move the puck back to the target position",
            "bring the block back to the goal",
        ),
        (
            "draw the disc toward the robot onto the marked spot",
            "the puck should end up closer to you, on the target",
            "could you drag that object back to the goal?",
        ),
    ),
    "reach-v3": _lang(
        "reach the goal",
        (
            "move the gripper to the target",
            "reach to the goal position",
            "put the hand at the target",
            "move your arm to the goal",
            "go to the target location",
        ),
        (
            "bring the end effector to the marked point",
            "touch the spot in the air with the claw",
            "could you extend your arm to the goal?",
        ),
    ),
    "reach-wall-v3": _lang(
        "reach the goal behind the wall",
        (
            "move the gripper over the wall to the target",
            "reach past the wall to the goal position",
            "put the hand at the target behind the wall",
            "move your arm around the wall to the goal",
            "go over the wall to the target location",
        ),
        (
            "bring the end effector past the barrier to the marked point",
            "clear the partition and touch the spot with the claw",
            "could you stretch over the wall to the goal?",
        ),
    ),
    "shelf-place-v3": _lang(
        "place the puck on the shelf",
        (
            "pick up the puck and put it on the shelf",
            "grab the puck and set it on the shelf",
            "lift the puck onto the shelf",
            "move the block onto the shelf",
            "put the puck on the shelf at the goal",
        ),
        (
            "store the disc on the rack",
            "the puck should end up up on the shelf",
            "could you shelve that object?",
        ),
    ),
    "sweep-into-v3": _lang(
        "sweep the puck into the hole",
        (
            "push the puck into the hole",
            "slide the puck into the hole in the table",
            "sweep the block into the goal hole",
            "brush the puck into the opening",
            "move the puck into the hole by pushing it",
        ),
        (
            "knock the disc down into the pocket",
            "the puck should end up in the hole",
            "could you nudge that object into the cavity?",
        ),
    ),
    "sweep-v3": _lang(
        "sweep the puck off the table",
        (
            "push the puck off the edge of the table",
            "slide the puck off the side",
            "sweep the block off the table",
            "brush the puck off the edge",
            "knock the puck off the table by pushing it",
        ),
        (
            "clear the disc from the tabletop",
            "the puck should end up past the table edge",
            "could you shove that object off the side?",
        ),
    ),
    "window-open-v3": _lang(
        "open the window",
        (
            "slide the window open",
            "push the window open",
            "move the window pane to open it",
            "open the sliding window",
            "slide the window sash to the open side",
        ),
        (
            "let some air in through the window",
            "the window should end up open",
            "could you slide that pane open?",
        ),
    ),
    "window-close-v3": _lang(
        "close the window",
        (
            "slide the window shut",
            "push the window closed",
            "move the window pane to close it",
            "close the sliding window",
            "slide the window sash to the closed side",
        ),
        (
            "keep the draught out by shutting the window",
            "the window should end up closed",
            "could you slide that pane shut?",
        ),
    ),
}


def training_instructions(task: str) -> tuple[str, ...]:
    """Every phrasing training data may carry: the canonical instruction first, then the train paraphrases.

    The canonical one must be among them, because in-distribution evaluation gives the policy exactly that string;
    a policy trained on paraphrases alone meets it for the first time at test time (a language shift).
    """
    language = LANGUAGE[resolve_task(task)]
    return (language.canonical, *language.train)


def training_caption(task: str, index: int) -> str:
    """The caption of a task's ``index``-th kept demonstration: the phrasings of :func:`training_instructions` in
    turn, canonical first.

    Any number of demonstrations then carries the canonical instruction, and the phrasings' counts differ by at
    most one. A seeded random draw per episode did not: 10 demonstrations over 6 phrasings left four MT10
    tasks without their canonical instruction, so in-distribution evaluation gave them a sentence they had never
    been trained on.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    options = training_instructions(task)
    return options[index % len(options)]


def task_of_instruction(text: str) -> str | None:
    """The MetaWorld task whose canonical instruction or paraphrase ``text`` is (``None`` for any other text)."""
    return _TASK_OF_TEXT.get(text)


_TASK_OF_TEXT = {text: task for task, lang in LANGUAGE.items() for text in (lang.canonical, *lang.train, *lang.heldout)}


def tasks_without_canonical(captions: Iterable[str]) -> list[str]:
    """MetaWorld tasks that ``captions`` name (by any phrasing) but never by the canonical instruction, sorted.

    In-distribution evaluation instructs a policy with the canonical sentence only, so a training set listed here
    leaves those tasks to be evaluated on a sentence they never saw. Captions of other tasks are ignored.
    """
    captions = set(captions)
    named = {task for text in captions if (task := task_of_instruction(text)) is not None}
    return sorted(task for task in named if LANGUAGE[task].canonical not in captions)


def missing_canonical_message(captions: Iterable[str]) -> str | None:
    """What is wrong with a training set's ``captions`` if :func:`tasks_without_canonical` finds tasks, else None."""
    uncovered = tasks_without_canonical(captions)
    if not uncovered:
        return None
    return (
        f"no demonstration of {', '.join(uncovered)} is captioned with the canonical instruction, the only one "
        "in-distribution evaluation uses"
    )


def instruction(task: str, split: Split = "canonical", rng: np.random.Generator | None = None) -> str:
    """An instruction for ``task`` from ``split``.

    ``canonical`` always returns the canonical instruction. ``train`` and ``heldout`` draw a paraphrase
    uniformly with ``rng``, or return the first paraphrase when ``rng`` is None (deterministic).
    """
    language = LANGUAGE[resolve_task(task)]
    if split == "canonical":
        return language.canonical
    if split == "train":
        options = language.train
    elif split == "heldout":
        options = language.heldout
    else:
        raise ValueError(f"unknown instruction split {split!r}; expected 'canonical', 'train' or 'heldout'")
    if rng is None:
        return options[0]
    return options[int(rng.integers(len(options)))]
