"""Training an analyst adapter on the CPU (``moodbot tune``): labelled files in, one small adapter file out.

``data`` reads and balances the labelled files, ``injections`` makes the injection-hardened copies, ``features``
loads the base model for training and runs its frozen lower layers once, ``top_layers`` runs the adapted upper
layers, ``trainer`` is the loop (early stopping, checkpoints, progress) and ``recipes`` names the presets.
"""
