"""Models of the ExFM platform. Modules return logits; losses live in exfm/losses.py.

- fm.FoundationModel: the large teacher, trained daily on every vertical.
- vm.VerticalModel: one small served model per vertical, with training-only heads (AH, SA target).
- adapter.StudentAdapter: a tiny MLP on the FM logit (training-only).
"""
