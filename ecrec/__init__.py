"""ecrec: federated, differentially private fine-tuning of a search ranker.

Data flows one way: data -> model -> local DP training -> federation ->
evaluation / explanation / audit -> report. Only ``ecrec.federation`` imports
Flower.
"""

__version__ = "0.1.0"
