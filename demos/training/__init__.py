"""Training from the browser (the Train tab): a visitor's images turned into an imagefolder (`datasets`), the run's
choices in the lessons' words (`choices`), and `python -m train` run as a process of its own, one at a time per
server (`jobs`). Nothing here imports train/: the tab runs the same command line as anyone would.
"""
