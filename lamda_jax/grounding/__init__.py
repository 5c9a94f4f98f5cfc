"""Groundedness (§6.2): the toolset (calculator, translator, information
retrieval, usable without any model), the LaMDA-Base -> LaMDA-Research
protocol, and the research dialogs the toolset makes for fine-tuning.

May import every layer below it, serving included.
"""
