"""The word sets the grounding rules work with (plain strings; ``filters`` maps them to ids)."""

from __future__ import annotations

# Words a caption can repeat ("a person in a hat and a child in a dress") and that may not end one.
FUNCTION_WORDS = frozenset("""a an the and or of in on at to with by from for into onto over under near is are
his her their its while as""".split())

# Scene phrases: words that open a phrase which can be left out whole ("in a red shirt", "on the
# beach", "in front of a building", "wearing a hat", "with a dog in the grass").
PHRASE_OPENERS = frozenset("""in on at down through near by into onto over under across along around behind beside
past toward towards with wearing holding from of up off inside outside""".split())
PLACE_WORDS = frozenset("front top side middle edge back bottom center centre end corner".split())
MODIFIERS = frozenset("""a an the his her their its some two three four several many other another small large
big little tall young old black white red blue green yellow orange pink purple brown gray grey dark light
striped colorful bright long short and wooden snowy grassy sandy rocky busy city""".split())

# Games whose name, after an article, needs the noun it modifies: "playing with a soccer" was cut
# short where "ball" or "game" was meant ("playing soccer" is whole)
GAME_NAMES = frozenset("tennis soccer basketball baseball football volleyball hockey golf rugby".split())

# Subjects and verbs
QUANTITY_NOUNS = frozenset("group crowd couple pair team family herd flock line bunch pack".split())
LINKING_VERBS = frozenset("is are was were".split())
SUPPORT_VERBS = frozenset("""sit sits sitting sat stand stands standing stood lie lies lying laying lay ride rides
riding rode jump jumps jumping climb climbs climbing""".split())
# Posture words ("a thing does not sit"; the eval's posture table). Which verbs the motion of a video
# window allows is ``grounding.verbs``.
STILL_VERBS = frozenset("""sit sits sitting sat seated stand stands standing stood lie lies lying laying lay pose
poses posing sleep sleeps sleeping""".split())
GAIT_VERBS = frozenset("walk walks walking run runs running".split())
NOT_WALKED_WITH = frozenset({"car", "bus", "truck", "train", "airplane", "boat"})  # "walking with a car"
RIDE_VERBS = frozenset("ride rides riding rode".split())  # "riding a car": one rides in a car, or drives it
DRIVE_VERBS = frozenset("drive drives driving drove".split())
# words that name a thing only in one compound ("potted plant", "teddy bear"): "a potted bowl" is no thing
COMPOUND_ONLY = {"potted": frozenset({"plant", "plants"}), "teddy": frozenset({"bear", "bears"})}
# A race is an event no detector output shows: every real-clip window captioned with these words
# was ordinary traffic or horses running free ("two cars are racing" on a highway). Not said of
# video windows; photos keep them (their human captions say "a dog races", and there is one frame).
RACE_WORDS = frozenset("race races racing raced racer racers".split())
# Scene nouns said without an article ("snow is in view", not "a snow")
MASS_NOUNS = frozenset("""water snow grass sand mud dirt ice sky fog smoke hay gravel grassland surf foliage
traffic""".split())
