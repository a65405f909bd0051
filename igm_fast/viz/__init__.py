"""Pictures of runs and data (matplotlib, Agg backend), written into the run dir: `python -m igm_fast.viz`."""
import matplotlib

matplotlib.use("Agg")  # headless: every figure goes to a file
