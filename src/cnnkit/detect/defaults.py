"""The detector's default settings, in a module light enough for the command line to import."""

BACKGROUND = "background"     # the class name that means "no object here"
BOX_FRACTION = 0.3            # an object's extent (half its longer box side) / window side, at its scale
PYRAMID_RATIO = 2 ** (1 / 3)  # between neighbouring scales: three per octave
THRESHOLD = 0.8               # chosen on tuning scenes (seed 120003), see docs/detection.md
NMS_IOU = 0.3                 # candidates overlapping a better one this much are suppressed
VOTE_IOU = 0.5                # candidates this close to a winner vote for its box
