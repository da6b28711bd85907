"""The prompt expander's grammar: synonyms, plurals, sides, order, unknown and filler words, pass-through, bad input."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest

from worldsim.envs.craft2d.tiles import BIOME_NAMES
from worldsim.prompt import CAPTION_WORDS, PHASES, Expansion, expand_prompt


def caption(prompt: str, **kw) -> str:
    return expand_prompt(prompt, **kw).caption


@pytest.mark.parametrize("words, phase", [
    ("night nighttime midnight dark", "night"), ("day daytime noon sunny bright daylight", "day"),
    ("dawn sunrise morning", "dawn"), ("dusk sunset evening twilight", "dusk")])
def test_phase_synonyms(words, phase):
    for w in words.split():
        assert caption(w) == phase, w


@pytest.mark.parametrize("words, biome", [
    ("snow snowy winter icy frozen tundra", "snow"), ("desert sandy dunes dry", "desert"),
    ("forest woods wooded trees woodland", "forest"),
    ("plains grassland meadow field fields grassy prairie", "plains")])
def test_biome_synonyms(words, biome):
    for w in words.split():
        assert caption(w) == f"{biome} biome", w


def test_engine_names_stand_for_themselves():
    for phase in PHASES:
        for biome in BIOME_NAMES:
            assert caption(f"{phase}, {biome} biome") == f"{phase}, {biome} biome"


@pytest.mark.parametrize("prompt, expected", [
    ("a pig to the left", "pig left of player"), ("pig left of player", "pig left of player"),
    ("a pig on the left", "pig left of player"), ("sheep to the right", "sheep right of player"),
    ("a sheep above", "sheep above player"), ("a pig over the player", "pig above player"),
    ("a pig under the player", "pig below player"), ("sheep beneath", "sheep below player"),
    ("on the left, a sheep", "sheep left of player"),  # a side said before its animal
    ("a pig and a sheep on the right", "pig left of player, sheep right of player"),  # binds to the last animal
    ("pigs on the left and right", "pig left of player, pig right of player"),
])
def test_sides(prompt, expected):
    assert caption(prompt) == expected


def test_an_animal_without_a_side_gets_right_then_left():
    assert caption("a pig") == "pig right of player"
    assert caption("a pig and a sheep") == "pig right of player, sheep left of player"
    assert caption("a pig on the right and a sheep") == "pig right of player, sheep left of player"


def test_plurals_and_counts():
    assert caption("pigs") == "pig right of player, pig left of player"
    assert caption("one sheep") == "sheep right of player"  # "sheep" is its own plural: one unless counted
    assert caption("two sheep to the left") == "sheep left of player, sheep left of player"
    assert caption("2 pigs below") == "pig below player, pig below player"


def test_order_is_the_engines():
    ex = expand_prompt("a pig on the left, swimming in the desert at night")
    assert ex.caption == "night, desert biome, player swimming, pig left of player"
    assert (ex.phase, ex.biome, ex.swimming, ex.animals) == ("night", "desert", True, (("pig", "left of"),))
    assert caption("in water") == caption("near a lake") == "player swimming"


def test_unknown_words_in_prompt_order():
    ex = expand_prompt("snowy night near a cave")
    assert ex == Expansion("night, snow biome", ("cave",), "night", "snow", False, ())
    assert expand_prompt("a purple cow at noon by the castle").unknown == ("purple", "cow", "castle")


def test_first_word_for_a_slot_wins_and_the_rest_is_unknown():
    assert expand_prompt("snowy forest") == Expansion("snow biome", ("forest",), biome="snow")
    assert expand_prompt("night at noon").unknown == ("noon",)
    assert expand_prompt("snowy winter tundra").unknown == ()  # the same value again is no conflict
    assert expand_prompt("a pig to the left on the right").unknown == ("right",)  # a second side, no animal for it


def test_a_third_animal_and_a_lone_side_are_unknown():
    ex = expand_prompt("a pig, a sheep and three pigs")
    assert ex.caption == "pig right of player, sheep left of player"
    assert ex.unknown == ("three", "pigs")
    assert expand_prompt("on the left") == Expansion("", ("left",))


def test_filler_case_and_punctuation():
    assert expand_prompt("The, a, an; near... with some of to ON and? by is are there one player biome!") == \
        Expansion("")
    assert caption("NIGHT!!! in the Desert...") == "night, desert biome"


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_the_unconditioned_caption(prompt):
    assert expand_prompt(prompt) == Expansion("", ())


def test_engine_captions_pass_through_unchanged():
    """What the model was trained on (captions without their events) is a prompt that expands to itself."""
    env = gym.make("worldsim/Craft2D-v0")
    rng = np.random.default_rng(0)
    seen = set()
    for seed in range(30):
        _, info = env.reset(seed=seed)
        for _ in range(int(rng.integers(0, 30))):
            _, _, terminated, _, info = env.step(int(rng.integers(env.action_space.n)))
            if terminated:
                break
        parts = info["caption"].split(", ")
        cap = ", ".join(parts[:len(parts) - len(info["events"])])
        seen.add(cap)
        assert expand_prompt(cap) == expand_prompt(cap.upper()) and expand_prompt(cap).caption == cap
        assert expand_prompt(cap).unknown == ()
    assert any("player" in c for c in seen)  # some with animals


def test_vocabulary_of_another_env_passes_through():
    vocab = ["red", "door", "opens", "robot", "left", "of"]
    ex = expand_prompt("The red door opens, a robot left of the blue door!", vocabulary=vocab)
    assert ex == Expansion("red door opens, robot left of door", ("blue",))  # filler outside it dropped, not unknown
    assert expand_prompt("", vocabulary=vocab) == Expansion("")


def test_craft2d_vocabulary_keeps_the_grammar():
    assert caption("woods at sunset", vocabulary=CAPTION_WORDS) == "dusk, forest biome"
    assert caption("sunset", vocabulary=["dusk", "night", "biome", "forest"]) == "dusk"  # a subset: still Craft2D
    # a trained Craft2D model's vocabulary: the state words and the events' ("mined", "stone", ...) beyond them
    trained = sorted(CAPTION_WORDS | {"mined", "placed", "stone", "dirt", "fell", "took", "fall", "damage"})
    assert caption("dunes at sunset", vocabulary=trained) == "dusk, desert biome"


@pytest.mark.parametrize("bad", [None, 3, b"night", ["night"]])
def test_a_prompt_must_be_a_string(bad):
    with pytest.raises(TypeError, match="expected a str"):
        expand_prompt(bad)


def test_bad_vocabularies():
    with pytest.raises(TypeError, match="collection of words"):
        expand_prompt("night", vocabulary="night")
    with pytest.raises(TypeError, match="collection of words"):
        expand_prompt("night", vocabulary=[1, 2])
    with pytest.raises(ValueError, match="vocabulary is empty"):
        expand_prompt("night", vocabulary=[])


def test_expansion_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        expand_prompt("night").caption = "day"


def test_the_docstring_table_is_the_grammar():
    """Every word the module docstring's table lists for a caption part expands to that part."""
    import worldsim.prompt as prompt

    rows = [line.split("|")[1:-1] for line in prompt.__doc__.splitlines() if line.startswith("|")][2:]
    slot = None
    for cells in rows:
        slot = cells[0].strip() or slot
        part, words = cells[1].strip(), cells[2].split()
        if slot in ("phase", "biome", "swimming"):
            for w in words:
                assert caption(w) == part.strip("`"), (slot, w)
        elif slot == "filler":
            assert expand_prompt(" ".join(words)) == Expansion("")
