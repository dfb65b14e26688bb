"""The words of the synthetic marketplace: segments, colours and shades, brands, models,
price words, exclusions and filler."""

from __future__ import annotations

#: Age bands used as the sensitive ``user_segment`` attribute.
USER_SEGMENTS: tuple[str, ...] = ("18-24", "25-34", "35-54", "55+")
#: Colour family -> the words shoppers use for it (the first is the canonical name).
COLOURS: dict[str, tuple[str, ...]] = {
    "black": ("black",),
    "white": ("white",),
    "grey": ("grey", "gray"),
    "navy": ("navy", "dark blue"),
    "red": ("red",),
    "green": ("green", "olive"),
    "blue": ("blue",),
    "beige": ("beige", "cream"),
    "brown": ("brown",),
    "pink": ("pink",),
}

#: Colour family -> shade names catalogues use for it (shoppers sometimes do too).
COLOUR_SHADES: dict[str, tuple[str, ...]] = {
    "black": ("jet black", "onyx", "ebony"),
    "white": ("ivory", "snow", "chalk"),
    "grey": ("slate", "graphite", "ash"),
    "navy": ("midnight blue", "ink", "indigo"),
    "red": ("crimson", "burgundy", "scarlet"),
    "green": ("sage", "emerald", "forest green"),
    "blue": ("cobalt", "sky blue", "azure"),
    "beige": ("sand", "taupe", "oatmeal"),
    "brown": ("chocolate", "tan", "walnut"),
    "pink": ("blush", "rose", "fuchsia"),
}

BRANDS: tuple[str, ...] = (
    "Acme",
    "Northwind",
    "Lumen",
    "Vela",
    "Orbis",
    "Kestrel",
    "Tundra",
    "Marlow",
    "Brightway",
    "Solace",
    "Fennick",
    "Haven",
)

#: Model names: shared by a product family's variants, never decide relevance.
MODEL_NAMES: tuple[str, ...] = (
    "Oslo",
    "Aria",
    "Nova",
    "Tempo",
    "Atlas",
    "Echo",
    "Luna",
    "Vista",
    "Metro",
    "Sierra",
    "Cove",
    "Pulse",
)

PRICE_BANDS: tuple[str, ...] = ("budget", "mid", "premium")
PRICE_BAND_PROBS: tuple[float, ...] = (0.4, 0.4, 0.2)
#: Words a shopper uses to ask for a price band (mid is never asked for).
PRICE_WORDS: dict[str, tuple[str, ...]] = {
    "budget": ("cheap", "budget", "affordable"),
    "premium": ("premium", "luxury", "high end"),
}

#: How shoppers exclude a material ("{material}" is replaced).
EXCLUSIONS: tuple[str, ...] = ("no {material}", "not {material}", "without {material}")
#: Words that carry no intent (shoppers add them; they never decide relevance).
FILLER_PREFIXES: tuple[str, ...] = ("buy", "best", "new", "looking for", "top rated")
FILLER_SUFFIXES: tuple[str, ...] = ("sale", "online", "deals", "for home", "free delivery")
