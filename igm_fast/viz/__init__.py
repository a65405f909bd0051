"""Pictures of runs and data (matplotlib, Agg backend), written into the run dir: `python -m igm_fast.viz`."""
import matplotlib

matplotlib.use("Agg")  # headless: every figure goes to a file


def save_png(fig, path):
    """Lay out, write atomically (a crashed plot never leaves half a PNG) and free the figure."""
    import matplotlib.pyplot as plt

    from igm_fast.io import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
