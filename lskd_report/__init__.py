"""Results and reporting shared by both front-ends: alpha x T tables, the paper's numbers, figures."""
