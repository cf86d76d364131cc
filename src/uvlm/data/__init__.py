"""The smart-watch dataset (docs/paper.md §1).

``attributes`` (what an image shows and how it is sampled), ``render`` (the images),
``tasks`` (the VQA, caption and generation texts), ``records`` (file formats and
validation), and the commands ``build`` (`data`), ``variants`` (`data-variants`) and
``bench`` (`bench-data`).
"""
