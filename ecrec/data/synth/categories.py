"""Product categories: synonyms, materials, must-have variants, sizes and accessories."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One of a category's two mutually exclusive forms of a must-have attribute."""

    label: str  # how a title writes it, e.g. "Wireless"
    asks: tuple[str, ...] = ()  # how shoppers ask for it; empty = nobody asks


@dataclass(frozen=True)
class Size:
    """One size of a category, as a title writes it and as shoppers ask for it."""

    label: str  # e.g. "Size 9", "3-Seater", "750 ml"
    asks: tuple[str, ...]


@dataclass(frozen=True)
class Accessory:
    """A product sold *for* a category's items ("Replacement Blade" for a circular saw)."""

    label: str
    asks: tuple[str, ...]  # query templates; "{host}" is the category word the shopper uses
    materials: tuple[str, ...]


@dataclass(frozen=True)
class Category:
    """A product category: names, materials, its must-have variants, sizes, accessories."""

    synonyms: tuple[str, ...]  # the first is the canonical name
    materials: tuple[str, ...]
    variants: tuple[Variant, Variant]
    accessories: tuple[Accessory, ...]
    sizes: tuple[Size, ...] = ()
    details: tuple[str, ...] = ()  # description phrases that never decide relevance


_SHOE_SIZES: tuple[Size, ...] = tuple(
    Size(f"Size {n}", (f"size {n}", f"sz {n}", f"uk {n}")) for n in range(6, 13)
)
_CLOTHING_SIZES: tuple[Size, ...] = (
    Size("Size XS", ("xs", "extra small", "size xs")),
    Size("Size S", ("small", "size s", "size small")),
    Size("Size M", ("medium", "size m", "size medium")),
    Size("Size L", ("large", "size l", "size large")),
    Size("Size XL", ("xl", "extra large", "size xl")),
)
_CORDLESS = (
    Variant("Cordless", ("cordless", "cord free")),
    Variant("Corded", ("corded", "mains powered")),
)

CATEGORIES: dict[str, Category] = {
    "sneakers": Category(
        ("sneakers", "trainers", "kicks"),
        ("leather", "canvas", "mesh", "suede"),
        (Variant("Slip-On", ("slip on", "laceless")), Variant("Lace-Up", ("lace up",))),
        (
            Accessory("Replacement Laces", ("laces for {host}", "{host} laces"), ("cotton",)),
            Accessory("Cleaning Kit", ("{host} cleaner", "cleaning kit for {host}"), ("plastic",)),
        ),
        _SHOE_SIZES,
        ("a cushioned sole", "a padded collar"),
    ),
    "running shoes": Category(
        ("running shoes", "runners", "jogging shoes"),
        ("mesh", "knit", "synthetic"),
        (Variant("Trail", ("trail", "off road")), Variant("Road", ("road", "for pavement"))),
        (
            Accessory("Insoles", ("insoles for {host}", "{host} insoles"), ("foam", "gel")),
            Accessory("Shoe Bag", ("bag for {host}", "{host} bag"), ("nylon", "cotton")),
        ),
        _SHOE_SIZES,
        ("a responsive foam midsole", "reflective trims"),
    ),
    "boots": Category(
        ("boots", "ankle boots"),
        ("leather", "suede", "rubber"),
        (Variant("Waterproof", ("waterproof", "water proof")), Variant("Not Waterproof")),
        (
            Accessory(
                "Waterproofing Spray",
                ("waterproofing spray for {host}", "{host} waterproofing spray"),
                ("silicone",),
            ),
            Accessory("Boot Trees", ("trees for {host}", "{host} trees"), ("cedar", "plastic")),
        ),
        _SHOE_SIZES,
        ("a grippy sole", "a side zip"),
    ),
    "dress": Category(
        ("dress", "gown", "frock"),
        ("cotton", "silk", "linen", "polyester"),
        (
            Variant("Sleeveless", ("sleeveless",)),
            Variant("Long Sleeve", ("long sleeve", "with sleeves")),
        ),
        (
            Accessory("Garment Bag", ("garment bag for {host}", "{host} garment bag"), ("nylon",)),
            Accessory("Belt", ("belt for {host}", "{host} belt"), ("leather", "fabric")),
        ),
        _CLOTHING_SIZES,
        ("a flattering a-line cut", "hidden pockets"),
    ),
    "jeans": Category(
        ("jeans", "denims"),
        ("denim", "stretch denim"),
        (
            Variant("High Rise", ("high rise", "high waisted")),
            Variant("Low Rise", ("low rise",)),
        ),
        (
            Accessory(
                "Repair Patches", ("patches for {host}", "{host} repair patches"), ("denim",)
            ),
            Accessory("Belt", ("belt for {host}", "{host} belt"), ("leather", "canvas")),
        ),
        _CLOTHING_SIZES,
        ("a slim fit", "five pockets"),
    ),
    "t-shirt": Category(
        ("t-shirt", "tee", "tshirt"),
        ("cotton", "organic cotton", "linen"),
        (Variant("Long Sleeve", ("long sleeve",)), Variant("Short Sleeve", ("short sleeve",))),
        (
            Accessory(
                "Folding Board", ("folding board for {host}", "{host} folding board"), ("plastic",)
            ),
        ),
        _CLOTHING_SIZES,
        ("a crew neck", "a soft brushed finish"),
    ),
    "jacket": Category(
        ("jacket", "coat"),
        ("leather", "wool", "nylon", "denim"),
        (
            Variant("Hooded", ("hooded", "with hood")),
            Variant("Without Hood", ("no hood", "without hood")),
        ),
        (
            Accessory("Replacement Hood", ("hood for {host}", "{host} hood"), ("nylon", "wool")),
            Accessory("Zip Pullers", ("zip pullers for {host}", "{host} zip"), ("metal",)),
        ),
        _CLOTHING_SIZES,
        ("a water-repellent finish", "zip pockets"),
    ),
    "sofa": Category(
        ("sofa", "couch", "settee"),
        ("velvet", "linen", "leather", "fabric"),
        (
            Variant("Reclining", ("reclining", "recliner")),
            Variant("Non-Reclining", ("non reclining", "fixed back")),
        ),
        (
            Accessory(
                "Cover",
                ("{host} cover", "cover for {host}", "slipcover for {host}"),
                ("cotton", "velvet", "polyester"),
            ),
            Accessory(
                "Replacement Cushions", ("cushions for {host}", "{host} cushions"), ("foam",)
            ),
            Accessory("Legs", ("legs for {host}", "{host} legs"), ("oak", "metal")),
        ),
        (
            Size("2-Seater", ("2 seater", "two seater", "loveseat")),
            Size("3-Seater", ("3 seater", "three seater")),
            Size("Corner", ("corner", "l shaped", "sectional")),
        ),
        ("deep seat cushions", "solid wood legs"),
    ),
    "lamp": Category(
        ("lamp", "table lamp", "light"),
        ("brass", "ceramic", "glass", "steel"),
        (Variant("Dimmable", ("dimmable",)), Variant("Non-Dimmable", ("non dimmable",))),
        (
            Accessory("Shade", ("{host} shade", "shade for {host}"), ("fabric", "paper")),
            Accessory("Replacement Bulb", ("bulb for {host}", "{host} bulb"), ("glass",)),
        ),
        (),
        ("a fabric shade", "an adjustable arm"),
    ),
    "mug": Category(
        ("mug", "cup", "coffee mug"),
        ("ceramic", "glass", "enamel", "stainless steel"),
        (
            Variant("Dishwasher Safe", ("dishwasher safe",)),
            Variant("Hand Wash Only", ("hand wash",)),
        ),
        (
            Accessory("Lid", ("lid for {host}", "{host} lid"), ("silicone", "bamboo")),
            Accessory("Warmer", ("{host} warmer", "warmer for {host}"), ("steel",)),
        ),
        (
            Size("300 ml", ("300 ml", "300ml", "small")),
            Size("450 ml", ("450 ml", "450ml", "large")),
        ),
        ("a comfortable handle", "a glossy glaze"),
    ),
    "backpack": Category(
        ("backpack", "rucksack", "daypack"),
        ("nylon", "canvas", "leather", "polyester"),
        (
            Variant("With Laptop Sleeve", ("with laptop sleeve", "laptop")),
            Variant("No Laptop Sleeve"),
        ),
        (
            Accessory("Rain Cover", ("rain cover for {host}", "{host} rain cover"), ("nylon",)),
            Accessory(
                "Replacement Straps", ("straps for {host}", "{host} straps"), ("nylon", "leather")
            ),
        ),
        (Size("20 L", ("20l", "20 litre")), Size("30 L", ("30l", "30 litre"))),
        ("water bottle pockets", "comfortable straps"),
    ),
    "headphones": Category(
        ("headphones", "headset", "earphones"),
        ("plastic", "aluminium", "leather"),
        (Variant("Wireless", ("wireless", "bluetooth")), Variant("Wired", ("wired",))),
        (
            Accessory("Ear Pads", ("ear pads for {host}", "{host} ear pads"), ("leather", "foam")),
            Accessory("Case", ("case for {host}", "{host} case"), ("plastic", "fabric")),
            Accessory("Replacement Cable", ("cable for {host}", "{host} cable"), ("plastic",)),
        ),
        (),
        ("noise cancelling", "a foldable design"),
    ),
    "watch": Category(
        ("watch", "wristwatch"),
        ("stainless steel", "leather", "silicone", "titanium"),
        (Variant("Water Resistant", ("water resistant",)), Variant("Not Water Resistant")),
        (
            Accessory(
                "Strap",
                ("{host} strap", "strap for {host}", "{host} band"),
                ("leather", "silicone"),
            ),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
        ),
        (Size("38 mm", ("38mm", "38 mm")), Size("42 mm", ("42mm", "42 mm"))),
        ("a sapphire glass face", "a date window"),
    ),
    "rug": Category(
        ("rug", "carpet", "area rug"),
        ("wool", "jute", "cotton", "polypropylene"),
        (
            Variant("Machine Washable", ("washable", "machine washable")),
            Variant("Dry Clean Only", ("dry clean",)),
        ),
        (
            Accessory("Rug Pad", ("pad for {host}", "{host} pad"), ("felt", "rubber")),
            Accessory("Gripper Tape", ("gripper for {host}", "{host} gripper"), ("rubber",)),
        ),
        (
            Size("120x170 cm", ("120x170", "120 x 170")),
            Size("160x230 cm", ("160x230", "160 x 230")),
            Size("200x290 cm", ("200x290", "200 x 290")),
        ),
        ("a low pile", "hand-woven edges"),
    ),
    "water bottle": Category(
        ("water bottle", "flask", "drinks bottle"),
        ("stainless steel", "glass", "plastic"),
        (
            Variant("Insulated", ("insulated", "keeps cold")),
            Variant("Non-Insulated", ("non insulated",)),
        ),
        (
            Accessory("Replacement Lid", ("lid for {host}", "{host} lid"), ("plastic", "steel")),
            Accessory("Cleaning Brush", ("brush for {host}", "{host} brush"), ("nylon",)),
        ),
        (
            Size("500 ml", ("500ml", "500 ml")),
            Size("750 ml", ("750ml", "750 ml")),
            Size("1 L", ("1l", "1 litre", "1 liter")),
        ),
        ("a leak-proof lid", "a carry loop"),
    ),
    "circular saw": Category(
        ("circular saw", "power saw", "saw"),
        ("aluminium", "magnesium", "steel"),
        _CORDLESS,
        (
            Accessory(
                "Replacement Blade",
                ("blade for {host}", "{host} blade", "replacement blade for {host}"),
                ("carbide", "steel"),
            ),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
        ),
        (),
        ("a laser guide", "a dust port"),
    ),
    "drill": Category(
        ("drill", "power drill", "drill driver"),
        ("plastic", "aluminium", "steel"),
        _CORDLESS,
        (
            Accessory("Drill Bits", ("bits for {host}", "{host} bits"), ("steel", "titanium")),
            Accessory("Battery", ("battery for {host}", "{host} battery"), ("lithium",)),
            Accessory("Charger", ("charger for {host}", "{host} charger"), ("plastic",)),
        ),
        (),
        ("a two-speed gearbox", "an led work light"),
    ),
    "grill": Category(
        ("grill", "bbq", "barbecue"),
        ("stainless steel", "cast iron", "enamel"),
        (Variant("Gas", ("gas", "propane")), Variant("Charcoal", ("charcoal",))),
        (
            Accessory("Cover", ("cover for {host}", "{host} cover"), ("polyester", "vinyl")),
            Accessory("Cleaning Brush", ("brush for {host}", "{host} brush"), ("steel",)),
        ),
        (),
        ("a side shelf", "a built-in thermometer"),
    ),
    "lawn mower": Category(
        ("lawn mower", "mower", "lawnmower"),
        ("steel", "plastic", "aluminium"),
        (Variant("Electric", ("electric",)), Variant("Petrol", ("petrol", "gas powered"))),
        (
            Accessory("Replacement Blade", ("blade for {host}", "{host} blade"), ("steel",)),
            Accessory("Grass Bag", ("grass bag for {host}", "{host} grass bag"), ("fabric",)),
        ),
        (),
        ("a 40 cm cutting width", "height adjustment"),
    ),
}
