"""The thin Flower layer: the only part of ``ecrec`` that imports Flower.

It adapts :class:`ecrec.node.MerchantNode` (client side) and the pooled
evaluator plus run folder (server side) to Flower's legacy stack, which is the
one where SecAgg+ works in Flower 1.42 (see ENVIRONMENT.md).
"""
