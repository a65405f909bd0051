"""Downstream evaluation of a pretrained encoder: KNN, linear probe, finetune, semi-supervised,
transfer, and score fusion across streams (`python -m igm_fast.eval`)."""
