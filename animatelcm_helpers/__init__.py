"""animatelcm_helpers: the code behind the AnimateLCM course notebooks.

One module per idea (see README): ``config`` (worlds, devices, Hub ids), ``toy`` (the Moving
Digits world), ``pipelines`` (load and drive diffusers' pipelines in either world), ``media``
(show and save videos), and the method's modules as they land.
"""

__version__ = "0.1.0"
