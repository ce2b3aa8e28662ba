"""The 80 COCO classes the detector knows, and how people name them in captions.

The caption model is grounded in these classes: a caption may only name an object whose class
was detected in its segment. ``NOUN_TO_CLASS`` maps caption nouns (singular and plural) to
class names; it is used to turn human caption corpora into pseudo-detections and to check
captions for hallucinated objects.
"""

from __future__ import annotations

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
NUM_CLASSES = len(COCO_CLASSES)
CLASS_INDEX = {name: i for i, name in enumerate(COCO_CLASSES)}

# The word a caption uses for one object of a class, and for several.
CLASS_WORDS: dict[str, tuple[str, str]] = {
    "person": ("person", "people"), "motorcycle": ("motorcycle", "motorcycles"),
    "airplane": ("airplane", "airplanes"), "traffic light": ("traffic light", "traffic lights"),
    "fire hydrant": ("fire hydrant", "fire hydrants"), "stop sign": ("stop sign", "stop signs"),
    "parking meter": ("parking meter", "parking meters"), "sheep": ("sheep", "sheep"),
    "skis": ("pair of skis", "skis"), "sports ball": ("ball", "balls"),
    "baseball bat": ("baseball bat", "baseball bats"), "baseball glove": ("baseball glove", "baseball gloves"),
    "tennis racket": ("tennis racket", "tennis rackets"), "wine glass": ("wine glass", "wine glasses"),
    "knife": ("knife", "knives"), "bus": ("bus", "buses"), "bench": ("bench", "benches"),
    "couch": ("couch", "couches"), "potted plant": ("potted plant", "potted plants"),
    "dining table": ("table", "tables"), "tv": ("television", "televisions"),
    "cell phone": ("phone", "phones"), "hot dog": ("hot dog", "hot dogs"), "mouse": ("computer mouse", "computer mice"),
    "teddy bear": ("teddy bear", "teddy bears"), "hair drier": ("hair dryer", "hair dryers"),
    "toothbrush": ("toothbrush", "toothbrushes"), "sandwich": ("sandwich", "sandwiches"),
    "scissors": ("pair of scissors", "scissors"),
    "giraffe": ("giraffe", "giraffes"), "cow": ("cow", "cows"), "bear": ("bear", "bears"),
}


# Things that do not move by themselves: a forecast never says they "keep moving" (in a moving
# camera's view they drift, but that is the camera).
STATIC_CLASSES = frozenset({
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "chair", "couch", "potted plant", "bed",
    "dining table", "toilet", "tv", "laptop", "microwave", "oven", "toaster", "sink", "refrigerator", "clock", "vase",
    "book", "bottle", "wine glass", "cup", "bowl", "keyboard", "mouse", "remote", "cell phone", "scissors",
    "teddy bear", "hair drier", "toothbrush", "umbrella", "handbag", "tie", "suitcase", "backpack",
})

# Things that can sit, stand or lie: posture words describe these only.
ANIMATE_CLASSES = frozenset({
    "person", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
})

# Kinds a caption may name when no class passes the evidence bar but the detector is sure of the
# kind: a dog it scores "cow 0.79" is an animal; a dune buggy it scores "truck 0.65" is a vehicle;
# on a picture where nothing else is sure, a "person 0.35" is a person (each kind's confidence
# floor is calibrated on photos: ``training/evidence.calibrate_kinds``).
KIND_CLASSES = {
    "animal": frozenset(ANIMATE_CLASSES - {"person"}),
    "vehicle": frozenset({"bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat"}),
    "person": frozenset({"person"}),
}
KIND_PLURALS = {"animal": "animals", "vehicle": "vehicles", "person": "people"}

# Things a person or animal can be on or in, and things that do something: a caption may say
# "sitting on a bench", "riding a horse", "a dog is running", but "sitting on a television" or
# "a bowl is preparing" is the decoder pairing a real object with the wrong phrase.
HANDHELD_CLASSES = frozenset({
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush", "handbag", "tie",
    "umbrella", "backpack", "frisbee", "sports ball", "kite", "baseball bat", "baseball glove", "tennis racket",
    "microwave", "toaster",
})


def class_word(name: str, count: int = 1) -> str:
    """``class_word("person", 2) == "people"``; default plural adds an s."""
    singular, plural = CLASS_WORDS.get(name, (name, name + "s"))
    return singular if count == 1 else plural


def with_article(noun: str) -> str:
    """"a person", "an umbrella"."""
    return ("an " if noun[0] in "aeiou" else "a ") + noun


# Caption nouns (lower-case, singular or plural) -> COCO class. Built by hand from the nouns
# that are frequent in MSVD / MSR-VTT / ActivityNet captions; lemmatised forms are looked up too.
_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": (
        "person", "people", "persons", "man", "men", "woman", "women", "boy", "boys", "girl", "girls",
        "child", "children", "kid", "kids", "baby", "babies", "toddler", "toddlers", "guy", "guys",
        "lady", "ladies", "player", "players", "athlete", "athletes", "crowd", "someone", "somebody",
        "dancer", "dancers", "chef", "cook", "gentleman", "gentlemen", "teenager", "teenagers", "teen",
        "student", "students", "teacher", "pedestrian", "pedestrians", "driver", "drivers", "rider",
        "riders", "singer", "singers", "actor", "actress", "individual", "individuals", "human",
        "humans", "worker", "workers", "shopper", "shoppers", "customer", "customers", "family",
        "couple", "group", "team", "audience", "spectators", "spectator", "gymnast", "skier", "surfer",
        "skateboarder", "cyclist", "cyclists", "biker", "bikers", "swimmer", "runner", "runners",
        "host", "reporter", "anchor", "commentator", "coach", "doctor", "police", "policeman",
        "soldier", "soldiers", "officer", "son", "daughter", "mother", "father", "mom", "dad",
        "brother", "sister", "friend", "friends", "wife", "husband", "adult", "adults", "infant",
        "youngster", "character", "performer", "performers", "musician", "musicians", "band",
        "wrestler", "wrestlers", "fighter", "boxer", "competitor", "contestant", "contestants",
        "passenger", "passengers", "commuter", "commuters", "walker", "walkers", "hand", "hands",
        "male", "males", "female", "females", "trainer",
    ),
    "bicycle": ("bicycle", "bicycles", "bike", "bikes", "cycle"),
    "car": ("car", "cars", "vehicle", "vehicles", "taxi", "taxis", "suv", "automobile", "jeep", "van", "vans", "sedan", "racecar"),
    "motorcycle": ("motorcycle", "motorcycles", "motorbike", "motorbikes", "scooter", "scooters", "moped",
                   "dirt bike", "dirt bikes", "motor bike", "motor bikes"),
    "airplane": ("airplane", "airplanes", "plane", "planes", "aircraft", "jet", "jets", "aeroplane"),
    "bus": ("bus", "buses", "busses", "coach bus"),
    "train": ("train", "trains", "locomotive", "tram", "subway"),
    "truck": ("truck", "trucks", "lorry", "lorries", "pickup"),
    "boat": ("boat", "boats", "ship", "ships", "canoe", "kayak", "sailboat", "yacht", "raft"),
    "traffic light": ("traffic light", "traffic lights", "stoplight"),
    "fire hydrant": ("hydrant", "fire hydrant"),
    "stop sign": ("stop sign",),
    "bench": ("bench", "benches"),
    "bird": ("bird", "birds", "parrot", "parrots", "chicken", "chickens", "hen", "hens", "duck", "ducks",
             "pigeon", "pigeons", "owl", "eagle", "goose", "geese", "rooster", "penguin", "penguins", "seagull"),
    "cat": ("cat", "cats", "kitten", "kittens", "kitty"),
    "dog": ("dog", "dogs", "puppy", "puppies", "pup", "puppys", "doggy"),
    "horse": ("horse", "horses", "pony", "ponies"),
    "sheep": ("sheep", "lamb", "lambs", "goat", "goats"),
    "cow": ("cow", "cows", "cattle", "bull", "calf"),
    "elephant": ("elephant", "elephants"),
    "bear": ("bear", "bears"),
    "zebra": ("zebra", "zebras"),
    "giraffe": ("giraffe", "giraffes"),
    "backpack": ("backpack", "backpacks"),
    "umbrella": ("umbrella", "umbrellas"),
    "handbag": ("handbag", "handbags", "purse", "bag", "bags"),
    "tie": ("tie", "necktie"),
    "suitcase": ("suitcase", "suitcases", "luggage"),
    "frisbee": ("frisbee", "frisbees"),
    "skis": ("ski", "skis"),
    "snowboard": ("snowboard", "snowboards"),
    "sports ball": ("ball", "balls", "football", "soccer ball", "basketball", "volleyball", "baseball", "tennis ball"),
    "kite": ("kite", "kites"),
    "baseball bat": ("bat", "baseball bat"),
    "skateboard": ("skateboard", "skateboards"),
    "surfboard": ("surfboard", "surfboards"),
    "tennis racket": ("racket", "rackets", "racquet", "tennis racket"),
    "bottle": ("bottle", "bottles"),
    "wine glass": ("wine glass", "glass", "glasses"),
    "cup": ("cup", "cups", "mug", "mugs"),
    "fork": ("fork", "forks"),
    "knife": ("knife", "knives"),
    "spoon": ("spoon", "spoons"),
    "bowl": ("bowl", "bowls"),
    "banana": ("banana", "bananas"),
    "apple": ("apple", "apples"),
    "sandwich": ("sandwich", "sandwiches", "burger", "hamburger"),
    "orange": ("orange", "oranges"),
    "broccoli": ("broccoli",),
    "carrot": ("carrot", "carrots"),
    "hot dog": ("hot dog", "hotdog", "hotdogs", "sausage", "sausages"),
    "pizza": ("pizza", "pizzas"),
    "donut": ("donut", "donuts", "doughnut", "doughnuts"),
    "cake": ("cake", "cakes", "cupcake", "cupcakes"),
    "chair": ("chair", "chairs"),
    "couch": ("couch", "couches", "sofa", "sofas"),
    "potted plant": ("plant", "plants", "potted plant", "flowerpot"),
    "bed": ("bed", "beds"),
    "dining table": ("table", "tables", "desk"),
    "toilet": ("toilet", "toilets"),
    "tv": ("tv", "television", "televisions", "monitor", "screen"),
    "laptop": ("laptop", "laptops", "computer", "computers", "notebook"),
    "mouse": ("mouse",),
    "remote": ("remote", "remote control"),
    "keyboard": ("keyboard", "keyboards"),
    "cell phone": ("phone", "phones", "cellphone", "smartphone", "iphone", "telephone", "cell phone", "cell phones"),
    "microwave": ("microwave",),
    "oven": ("oven", "ovens", "stove"),
    "toaster": ("toaster",),
    "sink": ("sink", "sinks"),
    "refrigerator": ("refrigerator", "fridge"),
    "book": ("book", "books"),
    "clock": ("clock", "clocks"),
    "vase": ("vase", "vases"),
    "scissors": ("scissors",),
    "teddy bear": ("teddy bear", "teddy", "stuffed animal"),
    "hair drier": ("hair dryer", "hairdryer", "blow dryer"),
    "toothbrush": ("toothbrush", "toothbrushes"),
}

NOUN_TO_CLASS: dict[str, str] = {noun: cls for cls, nouns in _SYNONYMS.items() for noun in nouns}
