"""A synthetic captioning dataset rendered in-process with PIL, for CPU experiments.

Each image shows one or two groups of identical shapes on a dark background: a group has a
count (1-3), a colour and a shape; two groups stand in a spatial relation (left/right or
above/below). The references describe exactly what is drawn, in three phrasings, so a model
must get entities (shape), attributes (colour, count) and relations right to score well - the
same error types the paper's pseudo-initial captions simulate (App. F.1).

Shapes follow a prior, as objects do in real images: most are circles (`SHAPE_WEIGHTS`), whatever
their colour. A captioner that cannot see shapes can still guess "circle" and be right on the
scenes that only hold circles; a scene with any other shape (`needs_hidden_detail`) can only be
captioned right by looking at the shapes. Most two-group scenes give both groups the same colour
(`SAME_COLOUR`), so colour never tells the groups' shapes apart.

`write_synthetic_dataset` writes PNGs plus `train.jsonl` / `test.jsonl` in the format
`captioner.data.read_jsonl` reads, so training goes through the regular data path.
Everything is a function of the seed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (60, 90, 235),
    "yellow": (235, 215, 40),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle")
SHAPE_WEIGHTS = (0.6, 0.2, 0.2)  # the prior: a shape-blind captioner's best guess is "circle"
MODAL_SHAPE = SHAPES[SHAPE_WEIGHTS.index(max(SHAPE_WEIGHTS))]
TWO_GROUPS = 0.8  # share of scenes with two groups
SAME_COLOUR = 0.6  # share of two-group scenes whose groups share a colour (same-colour distractors)
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
BACKGROUND = (30, 30, 30)

# Word lists for the lexical perturber, so pseudo-initial edits stay inside this world.
PERTURB_VOCABULARY: dict[str, list[list[str]]] = {
    "entity": [list(SHAPES)],
    "attribute": [list(COLOURS)],
    "count": [["two", "three"]],
    "relation": [
        ["to the left of", "to the right of"],
        ["above", "below"],
        ["on the left", "on the right"],
        ["on top", "at the bottom"],
    ],
}


@dataclass(frozen=True)
class Group:
    count: int
    colour: str
    shape: str

    def phrase(self) -> str:
        noun = self.shape if self.count == 1 else self.shape + "s"
        return f"{COUNT_WORDS[self.count]} {self.colour} {noun}"


@dataclass(frozen=True)
class Scene:
    first: Group  # left or top group
    second: Group | None  # right or bottom group; None = a single group
    layout: str  # "horizontal" | "vertical" | "single"
    seed: int  # placement jitter

    def captions(self) -> list[str]:
        a = self.first.phrase()
        if self.second is None:
            verb = "is" if self.first.count == 1 else "are"
            return [a, f"there {verb} {a}", f"{a} on a dark background"]
        b = self.second.phrase()
        if self.layout == "horizontal":
            return [f"{a} to the left of {b}", f"{b} to the right of {a}", f"{a} on the left and {b} on the right"]
        return [f"{a} above {b}", f"{b} below {a}", f"{a} on top and {b} at the bottom"]


def sample_scene(rng: random.Random, two_groups: float = TWO_GROUPS, same_colour: float = SAME_COLOUR) -> Scene:
    def group(colour: str | None = None) -> Group:
        shape = rng.choices(SHAPES, SHAPE_WEIGHTS)[0]
        return Group(rng.randint(1, 3), colour or rng.choice(list(COLOURS)), shape)

    first = group()
    if rng.random() >= two_groups:
        return Scene(first, None, "single", rng.randrange(1 << 30))
    # Two groups of the same coloured shape would be one group to the eye ("a blue triangle above a
    # blue triangle" vs "two blue triangles"): the second group differs in colour or shape.
    colour = first.colour if rng.random() < same_colour else None
    second = group(colour)
    while (second.colour, second.shape) == (first.colour, first.shape):
        second = group(colour)
    return Scene(first, second, rng.choice(["horizontal", "vertical"]), rng.randrange(1 << 30))


def groups_of(scene: Scene) -> list[Group]:
    return [scene.first] + ([scene.second] if scene.second is not None else [])


def needs_hidden_detail(scene: Scene) -> bool:
    """Whether the scene's captions depend on a shape a shape-blind first glance cannot guess: some
    group is not of the modal shape (a first glance that sees colours, counts and positions but no
    shape captions every other scene right by guessing `MODAL_SHAPE`)."""
    return any(group.shape != MODAL_SHAPE for group in groups_of(scene))


def _draw_shape(draw, shape: str, box: tuple[float, float, float, float], colour) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def _group_boxes(group: Group, region: tuple[float, float, float, float], rng: random.Random):
    """The group's shapes in distinct cells of a 2x2 grid over `region`, with jitter: [(box), ...]."""
    x0, y0, x1, y1 = region
    cw, ch = (x1 - x0) / 2, (y1 - y0) / 2
    boxes = []
    for cx, cy in rng.sample([(0, 0), (1, 0), (0, 1), (1, 1)], group.count):
        side = min(cw, ch) * rng.uniform(0.55, 0.8)
        left = x0 + cx * cw + rng.uniform(0, cw - side)
        top = y0 + cy * ch + rng.uniform(0, ch - side)
        boxes.append((left, top, left + side, top + side))
    return boxes


def shape_boxes(scene: Scene, size: int = 64) -> list[tuple[Group, tuple[float, float, float, float]]]:
    """Where every shape of the scene is drawn: (its group, its box), a function of the scene's seed.

    A group fills a square of half the image side split into 2 x 2 cells, one shape per cell: at
    64 px a cell is exactly one 16-px ViT patch, so each small shape sits in its own patch and a
    count is a number of patches (the detail a late ViT layer may blur and an early one keeps).
    """
    rng = random.Random(scene.seed)
    half, quarter, side = size / 2, size / 4, float(size)
    second = scene.second if scene.second is not None else scene.first  # only "single" has no second group
    regions: list[tuple[Group, tuple[float, float, float, float]]]
    if scene.layout == "single":
        regions = [(scene.first, (quarter, quarter, quarter + half, quarter + half))]
    elif scene.layout == "horizontal":
        regions = [
            (scene.first, (0.0, quarter, half, quarter + half)),
            (second, (half, quarter, side, quarter + half)),
        ]
    else:
        regions = [
            (scene.first, (quarter, 0.0, quarter + half, half)),
            (second, (quarter, half, quarter + half, side)),
        ]
    return [(group, box) for group, region in regions for box in _group_boxes(group, region, rng)]


def render_scene(scene: Scene, size: int = 64):
    """The scene as a `size` x `size` RGB PIL image (see `shape_boxes` for the placement)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for group, box in shape_boxes(scene, size):
        _draw_shape(draw, group.shape, box, COLOURS[group.colour])
    return image


# The stand-in ViT's pretraining labels (captioner/replication/standins.py) are per patch: what
# each ViT patch shows (nothing, or a shape of a colour). Counts and positions are never labels;
# they are only implied by which patches are occupied.
CONCEPTS: tuple[str, ...] = tuple(f"{colour} {shape}" for colour in COLOURS for shape in SHAPES)


PATCH_CLASSES: tuple[str, ...] = ("empty", *CONCEPTS)


def patch_labels(scene: Scene, size: int = 64, patch: int = 16) -> list[int]:
    """Per ViT patch (row-major): index into `PATCH_CLASSES` of the shape whose centre lies in it."""
    per_row = size // patch
    labels = [0] * per_row * per_row
    for group, (x0, y0, x1, y1) in shape_boxes(scene, size):
        cell = int((y0 + y1) / 2 // patch) * per_row + int((x0 + x1) / 2 // patch)
        labels[cell] = PATCH_CLASSES.index(f"{group.colour} {group.shape}")
    return labels


def patch_facts(label: int) -> tuple[int, int, int]:
    """(occupied 0/1, colour index or -1, shape index or -1) of a `PATCH_CLASSES` index."""
    if label == 0:
        return 0, -1, -1
    colour, shape = PATCH_CLASSES[label].split()
    return 1, list(COLOURS).index(colour), SHAPES.index(shape)


def sample_scenes(n: int, seed: str | int) -> list[Scene]:
    """`n` scenes from their own seeded stream (independent of `write_synthetic_dataset`'s)."""
    rng = random.Random(f"scenes:{seed}")
    return [sample_scene(rng) for _ in range(n)]


def vocabulary_text() -> list[str]:
    """Sentences covering every word the captions use (to train a tiny tokenizer on)."""
    words = [COUNT_WORDS[c] for c in COUNT_WORDS] + list(COLOURS) + list(SHAPES) + [s + "s" for s in SHAPES]
    rng = random.Random(0)
    lines = [" ".join(words)]
    for _ in range(50):
        lines += sample_scene(rng).captions()
    return lines


def write_synthetic_dataset(
    out_dir: str | Path, n_train: int, n_test: int, size: int = 64, seed: int = 0
) -> dict[str, Path]:
    """Render train and held-out scenes to `out_dir/images/` and write train.jsonl / test.jsonl."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"synthetic-scenes:{seed}")
    paths = {}
    for split, count in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(count):
            scene = sample_scene(rng)
            name = f"images/{split}_{i:05d}.png"
            render_scene(scene, size).save(out_dir / name)
            rows.append({"image": name, "id": f"{split}_{i:05d}", "captions": scene.captions()})
        paths[split] = out_dir / f"{split}.jsonl"
        paths[split].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths
