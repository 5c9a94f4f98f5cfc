"""Groundedness (§6.2): the toolset (calculator, translator, information
retrieval) and the LaMDA-Base -> LaMDA-Research loop. Not built yet.

May import every layer below it, serving included.
"""
