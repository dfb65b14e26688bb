"""Reports over a run folder: privacy budget report, figures, the HTML run report."""
