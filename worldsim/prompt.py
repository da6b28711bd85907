"""Prompt expansion: a short user prompt in, a caption in the style the world model was trained on out.

Craft2D's engine captions every frame (`Game.caption`) as comma-separated parts in a fixed order; the world model is
conditioned on those captions, events stripped. `expand_prompt("a pig to the left in the desert at sunset")` writes
"dusk, desert biome, pig left of player". Words are matched one by one, case-insensitively, punctuation ignored:

| slot     | caption part              | prompt words                                                                  |
|----------|---------------------------|-------------------------------------------------------------------------------|
| phase    | `dawn`                    | dawn sunrise morning daybreak                                                 |
|          | `day`                     | day daytime noon sunny bright daylight midday                                 |
|          | `dusk`                    | dusk sunset evening twilight                                                  |
|          | `night`                   | night nighttime midnight dark                                                 |
| biome    | `snow biome`              | snow snowy winter icy ice frozen tundra                                       |
|          | `desert biome`            | desert sandy sand dunes dune dry                                              |
|          | `forest biome`            | forest forests woods wooded trees woodland                                    |
|          | `plains biome`            | plains plain grassland meadow field fields grassy prairie                     |
| swimming | `player swimming`         | swimming swim swims water lake pond underwater                                |
| animals  | `<kind> <side> player`    | pig sheep; a plural (pigs) or `two`/`2` asks for two of that kind             |
| side     | `left of` `right of` `above` `below` | left / right / above over atop / below under beneath underneath    |
| filler   | (nothing)                 | a an the near in at with some and of to on by is are there one 1 player biome |

Rules:
* Parts come out in the engine's order: phase, biome, swimming, animals. A slot the prompt leaves out is left out
  of the caption: the model fills it in. An empty prompt is the empty caption, the unconditioned model.
* A side word goes to the last animal word before it, or else to the next one; one side places every animal of
  that word ("two sheep to the left"), two place one each ("pigs on the left and right").
* The engine's grammar has no animal without a side, so an unplaced animal gets `right of player`, or `left of
  player` when another animal is already right of the player.
* The engine captions the two nearest animals: a third is not used.
* Conflicts: the first word for a slot wins ("snowy forest" is the snow biome); a later word naming another value
  for that slot could not be used and is reported in `unknown`, as is every word outside the table.

The phase, biome and animal names are the engine's own (`engine._PHASES`, `tiles.BIOME_NAMES`, `tiles.KIND_NAMES`):
the table above only adds synonyms for them. Given a `vocabulary` that is not made of Craft2D caption words (another
env's captions), the prompt passes through instead: words in the vocabulary are kept, in order and comma-separated
parts as written, and the rest is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from worldsim.envs.craft2d.engine import _PHASES as PHASES  # the caption's phase names, day_phase's order
from worldsim.envs.craft2d.tiles import BIOME_NAMES, KIND_NAMES, Kind

ANIMALS = tuple(name for name in KIND_NAMES if name != KIND_NAMES[Kind.PLAYER])
SIDES = ("left of", "right of", "above", "below")  # as Game.caption writes where an animal is
MAX_ANIMALS = 2  # Game.caption names the two nearest animals in view
WORD = re.compile(r"[a-z0-9]+")  # a word, as worldsim.models.text splits captions: lower-case letters and digits

_PHASE_WORDS = {"dawn": "sunrise morning daybreak", "day": "daytime noon sunny bright daylight midday",
                "dusk": "sunset evening twilight", "night": "nighttime midnight dark"}
_BIOME_WORDS = {"snow": "snowy winter icy ice frozen tundra", "desert": "sandy sand dunes dune dry",
                "forest": "forests woods wooded trees woodland",
                "plains": "plain grassland meadow field fields grassy prairie"}
_SIDE_WORDS = {"left of": "left", "right of": "right", "above": "above over atop",
               "below": "below under beneath underneath"}
SWIM_WORDS = frozenset("swimming swim swims water lake pond underwater".split())
TWO_WORDS = frozenset(("two", "2"))
FILLER = frozenset("a an the near in at with some and of to on by is are there one 1 player biome".split())


def _synonyms(table: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """word -> engine name: every engine name stands for itself, plus the table's synonyms for it."""
    stale = set(table) - set(names)
    if stale:  # the engine renamed something: fail at import, not with a silently dead synonym
        raise ValueError(f"synonyms for {sorted(stale)}: expected engine names among {names}")
    return {name: name for name in names} | {w: name for name, words in table.items() for w in words.split()}


PHASE_OF = _synonyms(_PHASE_WORDS, PHASES)
BIOME_OF = _synonyms(_BIOME_WORDS, BIOME_NAMES)
SIDE_OF = {w: side for side, words in _SIDE_WORDS.items() for w in words.split()}
ANIMAL_OF = {name: name for name in ANIMALS} | {name + "s": name for name in ANIMALS if not name.endswith("s")}
# Every word the grammar can write: a vocabulary made only of these means the model speaks Craft2D's captions.
CAPTION_WORDS = frozenset(" ".join((*PHASES, *BIOME_NAMES, *ANIMALS, *SIDES, "biome player swimming")).split())
CRAFT2D_CORE = frozenset((*PHASES, *BIOME_NAMES, "biome"))  # words every Craft2D captions model knows


@dataclass(frozen=True)
class Expansion:
    """A prompt as a caption, the words that could not be used, and (for Craft2D) the slots it filled."""

    caption: str
    unknown: tuple[str, ...] = ()  # in prompt order; filler words are understood, never unknown
    phase: str | None = None
    biome: str | None = None
    swimming: bool = False
    animals: tuple[tuple[str, str], ...] = ()  # (kind, side), e.g. ("pig", "left of")


def expand_prompt(prompt: str, vocabulary: Collection[str] | None = None) -> Expansion:
    """The caption for `prompt`: Craft2D's grammar (module docstring) unless `vocabulary` is another env's words (one
    that lacks Craft2D's times of day and biomes, and holds words beyond its captions')."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt {prompt!r} of type {type(prompt).__name__}: expected a str such as 'snowy night'")
    if vocabulary is not None:
        if isinstance(vocabulary, str) or not all(isinstance(w, str) for w in vocabulary):
            raise TypeError(f"vocabulary {vocabulary!r}: expected a collection of words (str), or None for "
                            f"Craft2D's grammar")
        vocab = {w.lower() for w in vocabulary}
        if not vocab:
            raise ValueError("vocabulary is empty: expected the words of the model's captions, or None for "
                             "Craft2D's grammar")
        # a Craft2D model's vocabulary holds the state words and more (the events: "mined", "placed", "stone"...)
        if not (vocab <= CAPTION_WORDS or CRAFT2D_CORE <= vocab):
            return _pass_through(prompt, vocab)
    return _craft2d(WORD.findall(prompt.lower()))


def _pass_through(prompt: str, vocab: set[str]) -> Expansion:
    parts, unknown = [], []
    for part in prompt.lower().split(","):
        kept = [w for w in WORD.findall(part) if w in vocab]
        unknown += [w for w in WORD.findall(part) if w not in vocab and w not in FILLER]
        if kept:
            parts.append(" ".join(kept))
    return Expansion(", ".join(parts), tuple(unknown))


def _craft2d(words: list[str]) -> Expansion:
    slots: dict[str, str] = {}
    swimming = False
    groups: list[tuple[str, int, list[str]]] = []  # per animal word: (kind, how many, the sides said for them)
    pending: tuple[int, str] | None = None  # (word index, side) of a side said before its animal: "left, a pig"
    count = 1
    unknown: list[int] = []  # indices into words
    for i, w in enumerate(words):
        if w in PHASE_OF or w in BIOME_OF:
            slot, value = ("phase", PHASE_OF[w]) if w in PHASE_OF else ("biome", BIOME_OF[w])
            if slots.setdefault(slot, value) != value:
                unknown.append(i)  # the first word for a slot wins
        elif w in SWIM_WORDS:
            swimming = True
        elif w in TWO_WORDS:
            count = 2
        elif w in ANIMAL_OF:
            room = MAX_ANIMALS - sum(n for _, n, _ in groups)
            n = min(max(count, 1 if w == ANIMAL_OF[w] else 2), room)  # a plural ("pigs") asks for two
            sides = [pending[1]] if pending else []
            if n == 0:  # no room left in the caption for this animal, nor for the side said before it
                unknown += [pending[0], i] if pending else [i]
                sides = []
            groups.append((ANIMAL_OF[w], n, sides))
            pending, count = None, 1
        elif w in SIDE_OF:
            if groups and len(groups[-1][2]) < groups[-1][1]:
                groups[-1][2].append(SIDE_OF[w])
            elif pending is None:
                pending = (i, SIDE_OF[w])
            else:
                unknown.append(i)
        elif w not in FILLER:
            unknown.append(i)
    if pending is not None:
        unknown.append(pending[0])  # a side with no animal after it
    animals: list[list[str | None]] = []
    for kind, n, sides in groups:
        sides = sides * n if len(sides) == 1 else sides or [None] * n  # one side places the whole group
        animals += [[kind, side] for side in sides]
    for a in animals:
        if a[1] is None:
            a[1] = "left of" if any(b[1] == "right of" for b in animals) else "right of"
    placed = tuple((kind, side) for kind, side in animals)
    parts = [slots.get("phase"), slots.get("biome") and f"{slots['biome']} biome", swimming and "player swimming"]
    parts += [f"{kind} {side} player" for kind, side in placed]
    return Expansion(", ".join(p for p in parts if p), tuple(words[i] for i in sorted(unknown)), slots.get("phase"),
                     slots.get("biome"), swimming, placed)
