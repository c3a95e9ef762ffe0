"""Inspection: compile the step on abstract values and report memory and collectives."""
