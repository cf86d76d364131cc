"""The three text tasks per image (docs/paper.md §1.2) and their LLaVA-format records.

* VQA: a question type from ``['what', 'what', 'what', 'where', 'where']``; *what* asks about
  weather, time or battery, *where* about the battery or weather corner (each of the five
  attributes 0.2); one turn plus three more, each kept with probability 0.4; ``<image>\\n``
  starts the first question; answers are the bare strings of ``Watch.answer``.
* Caption: one of ten ``<image>\\n`` prompts; the answer is an opener followed by clauses
  (time always, each other attribute with probability 0.5, in ``ATTRIBUTES`` order).
* Generation: the prompt is a request opener followed by the same kind of clause set; the
  answer is one of three sentences ending in ``<image>``, where the image tokens go.

The face colour is never mentioned, as in the paper. Templates are our wording with the
paper's counts (9 weather, 10 time, 10 battery, 10 + 10 position questions; 3-4 templates per
clause); the generation openers and answers are the paper's own strings.
"""

from __future__ import annotations

import numpy as np

from uvlm.data.attributes import ATTRIBUTES, POSITIONS, WEATHERS, Watch

__all__ = ["ATTRIBUTES", "POSITIONS", "TASKS", "WEATHERS", "caption", "generation",
           "make_records", "vqa"]

TASKS = ("vqa", "caption", "generation")
IMAGE_TOKEN = "<image>"

QUESTION_TYPES = ("what", "what", "what", "where", "where")
WHAT = ("weather", "time", "battery")
WHERE = ("battery_pos", "weather_pos")
QUESTIONS = {
    "weather": (
        "What weather does the watch show?",
        "What is the weather on the watch?",
        "Which weather icon is displayed?",
        "What weather condition is shown?",
        "What does the weather icon indicate?",
        "What kind of weather is displayed on the watch?",
        "What is the weather like according to the watch?",
        "What is the weather forecast on the watch face?",
        "Which weather is indicated?",
    ),
    "time": (
        "What time is it on the watch?",
        "What time does the watch show?",
        "What time is displayed?",
        "Read the time on the watch.",
        "What is the exact time shown?",
        "What time do the hands indicate?",
        "What is the current time on the watch?",
        "Tell me the time shown on the watch.",
        "What time is indicated by the hands?",
        "What is the time reading?",
    ),
    "battery": (
        "What is the battery level?",
        "How much battery is left?",
        "What battery percentage is shown?",
        "What is the battery percentage?",
        "How charged is the watch?",
        "What charge level does the watch display?",
        "What is the remaining battery?",
        "What does the battery indicator read?",
        "How full is the battery?",
        "What percentage of battery remains?",
    ),
    "battery_pos": (
        "Where is the battery indicator?",
        "In which corner is the battery shown?",
        "Where is the battery level displayed?",
        "Which corner shows the battery?",
        "Where can you see the battery?",
        "Where is the battery icon located?",
        "In which corner is the charge level?",
        "Where is the battery percentage placed?",
        "Which corner holds the battery indicator?",
        "Where on the image is the battery?",
    ),
    "weather_pos": (
        "Where is the weather icon?",
        "In which corner is the weather shown?",
        "Where is the weather displayed?",
        "Which corner shows the weather?",
        "Where can you see the weather?",
        "Where is the weather indicator located?",
        "In which corner is the weather icon?",
        "Where is the forecast placed?",
        "Which corner holds the weather icon?",
        "Where on the image is the weather?",
    ),
}
EXTRA_TURN_PROB = 0.4
EXTRA_TURNS = 3

CAPTION_PROMPTS = tuple(IMAGE_TOKEN + "\n" + q for q in (
    "Describe this image.",
    "What does this smart watch show?",
    "Give a short description of the watch in the image.",
    "What are the main elements of this watch face?",
    "Describe what is displayed on this smart watch.",
    "Can you describe the watch in this picture?",
    "Summarize the information shown on this watch.",
    "What can you see in this image?",
    "Please describe the key features of this smart watch.",
    "Write a caption for this image.",
))
CAPTION_OPENERS = (
    "The image shows a smart watch",
    "There is a smart watch in the image",
    "A smart watch is shown in the image",
)
GENERATION_OPENERS = (
    "Can you generate a image of a smart watch",
    "Can you draw a smart watch",
    "Please show a smart watch",
)
GENERATION_ANSWERS = (
    "Sure, here is the image. \n<image>",
    "The image is shown as you wish. \n<image>",
    "The image is generated. \n<image>",
)
#: probability that a caption or generation prompt mentions each attribute
CLAUSE_PROB = {"time": 1.0, "weather": 0.5, "battery": 0.5, "weather_pos": 0.5,
               "battery_pos": 0.5}
#: ``{}`` receives the bare value: HH:MM:SS, a weather, a battery number, a corner
CLAUSES = {
    "time": (", showing the time {}", ", with the time {}", ", on which the time reads {}",
             ", displaying {}"),
    "weather": (", showing {} weather", ", with a {} weather icon", ", indicating {} weather"),
    "battery": (", with {}% battery", ", showing {}% charge", ", with the battery at {}%"),
    "weather_pos": (", with the weather in the {} corner", ", with the weather icon at {}",
                    ", weather shown at the {}"),
    "battery_pos": (", with the battery in the {} corner", ", with the battery indicator at {}",
                    ", battery shown at the {}"),
}


def _pick(gen: np.random.Generator, options: tuple):
    return options[int(gen.integers(len(options)))]


def question(gen: np.random.Generator, watch: Watch) -> tuple[str, str, str]:
    """One (attribute, question, answer) with the paper's type and attribute probabilities."""
    attribute = _pick(gen, WHAT if _pick(gen, QUESTION_TYPES) == "what" else WHERE)
    return attribute, _pick(gen, QUESTIONS[attribute]), watch.answer(attribute)


def vqa(gen: np.random.Generator, watch: Watch) -> tuple[list[dict], list[str]]:
    """Conversation of 1 + Binomial(3, 0.4) turns and the attribute asked in each turn."""
    turns = [question(gen, watch)]
    for _ in range(EXTRA_TURNS):
        if gen.random() < EXTRA_TURN_PROB:
            turns.append(question(gen, watch))
    conversations = []
    for i, (_, q, a) in enumerate(turns):
        conversations += [{"from": "human", "value": (IMAGE_TOKEN + "\n" if i == 0 else "") + q},
                          {"from": "gpt", "value": a}]
    return conversations, [t[0] for t in turns]


def describe(gen: np.random.Generator, watch: Watch, opener: str) -> tuple[str, list[str]]:
    """``opener`` + a random clause set + ".", and the attributes it mentions."""
    mentioned = [a for a in ATTRIBUTES if gen.random() < CLAUSE_PROB[a]]
    text = opener
    for a in mentioned:
        value = watch.battery if a == "battery" else watch.answer(a)  # the clause adds "%"
        text += _pick(gen, CLAUSES[a]).format(value)
    return text + ".", mentioned


def caption(gen: np.random.Generator, watch: Watch) -> tuple[list[dict], list[str]]:
    prompt = _pick(gen, CAPTION_PROMPTS)
    text, mentioned = describe(gen, watch, _pick(gen, CAPTION_OPENERS))
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": text}], mentioned


def generation(gen: np.random.Generator, watch: Watch) -> tuple[list[dict], list[str]]:
    prompt, mentioned = describe(gen, watch, _pick(gen, GENERATION_OPENERS))
    answer = _pick(gen, GENERATION_ANSWERS)
    return [{"from": "human", "value": prompt}, {"from": "gpt", "value": answer}], mentioned


TASK_BUILDERS = {"vqa": vqa, "caption": caption, "generation": generation}
#: record order per image: the paper's test file puts VQA first, its train files generation
RECORD_ORDER = {"train": ("generation", "vqa", "caption"),
                "test": ("vqa", "generation", "caption"),
                "extra": ("generation", "vqa", "caption")}


def make_records(gen: np.random.Generator, watch: Watch, split: str, image_id: int,
                 image: str) -> list[dict]:
    """The three records of one image, in ``RECORD_ORDER[split]``.

    The texts are drawn in a fixed task order (vqa, caption, generation) whatever the output
    order, so the same seed gives the same texts in every split layout.
    """
    drawn = {task: TASK_BUILDERS[task](gen, watch) for task in TASKS}
    return [{"id": f"{split}-{image_id:06d}-{task}", "image_id": image_id, "split": split,
             "task": task, "image": image, "conversations": drawn[task][0],
             "attributes": drawn[task][1]}
            for task in RECORD_ORDER[split]]
