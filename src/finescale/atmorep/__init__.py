"""The AtmoRep side of finescale: pre-training and fine-tuning, predicting tasks as ensembles on
disk, the references each task is compared with, and attention maps. The model itself is
``finescale.models.atmorep``; its tokens come from ``finescale.data.tokens``."""
