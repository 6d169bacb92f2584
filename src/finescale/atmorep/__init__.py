"""AtmoRep in finescale, all in this package: its settings (:mod:`.settings`), the fields as
time series on one grid (:mod:`.series`), neighbourhoods cut into tokens with the training
masks (:mod:`.tokens`), the transformer blocks (:mod:`.network`) and the model with its ensemble
tail (:mod:`.model`); pre-training and fine-tuning (:mod:`.train`), loading a checkpoint
(:mod:`.checkpoint`), predicting tasks as ensembles on disk (:mod:`.predict`), the references
each task is compared with (:mod:`.references`) and attention maps (:mod:`.attention`)."""
