"""Importers that turn public or in-house search logs into an ecrec marketplace.

Supported formats:

``esci``
    Amazon Shopping Queries (ESCI): a folder holding
    ``shopping_queries_dataset_examples.parquet`` and
    ``shopping_queries_dataset_products.parquet`` (joined on product id and
    locale). E/S/C/I become relevance 3/2/1/0; ``label`` is relevance >= 2.
``wands``
    Wayfair WANDS: a folder with tab-separated ``query.csv``, ``product.csv`` and
    ``label.csv``. Exact/Partial/Irrelevant become relevance 3/1/0; ``label`` is
    1 for Exact.
``csv`` / ``jsonl``
    One plain file whose columns are mapped onto contract fields with
    ``mapping`` (``{"source column": "contract field"}``).

Every import desensitises text and hashes user ids before anything is
returned, splits whole queries into merchants (by an existing ``merchant_id``
column or a Dirichlet split), and holds out a fraction of every merchant's
queries as the server's pooled validation shard. Bad input raises
:class:`~ecrec.errors.DataError` naming the file, row and field.

Modules: ``readers`` (strict text, csv and JSON-lines reading), ``columns`` (helpers
the formats share), one module a format (``esci``, ``wands``, ``plain`` for csv /
jsonl) and ``assemble`` (:func:`import_dataset`: checks, desensitisation, partition,
validation hold-out).
"""

from ecrec.data.importers.assemble import FORMATS, ImportOptions, PartitionBy, import_dataset
from ecrec.data.importers.columns import MAX_DESCRIPTION_WORDS
from ecrec.data.importers.esci import ESCI_EXAMPLES_FILE, ESCI_PRODUCTS_FILE, ESCI_RELEVANCE
from ecrec.data.importers.plain import MAPPABLE_FIELDS, parse_mapping
from ecrec.data.importers.wands import WANDS_FILES, WANDS_RELEVANCE

__all__ = [
    "ESCI_EXAMPLES_FILE",
    "ESCI_PRODUCTS_FILE",
    "ESCI_RELEVANCE",
    "FORMATS",
    "MAPPABLE_FIELDS",
    "MAX_DESCRIPTION_WORDS",
    "WANDS_FILES",
    "WANDS_RELEVANCE",
    "ImportOptions",
    "PartitionBy",
    "import_dataset",
    "parse_mapping",
]
