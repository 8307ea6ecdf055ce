"""What a run writes: atomic score files, merged shards, the pruned dataset with its random baseline, the HTML report."""
