"""Training an analyst adapter on the CPU (``moodbot tune``): labelled files in, one small adapter file out.

``data`` reads and balances the labelled files (``moodbot eval`` reads its files with the same reader),
``injections`` makes the injection-hardened copies, ``network`` loads the base model for training, runs its frozen
lower layers once and the adapted upper layers per step, ``trainer`` is the loop (early stopping, checkpoints,
progress) and ``recipes`` names the presets.
"""
