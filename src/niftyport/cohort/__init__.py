"""Cohorts: many scans parcellated on a Dask cluster, written as BIDS derivatives.

One module per role:

* :mod:`.scans` -- one scan to parcellate (:class:`~.scans.Scan`) and the
  non-BIDS inputs: a CSV list, a folder, a glob;
* :mod:`.bids` -- the T1-weighted scans of a BIDS dataset (a small reader of
  ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]``; pybids is not needed);
* :mod:`.settings` -- what changes the labels (recorded in each sidecar, compared on a rerun);
* :mod:`.derivatives` -- the derivatives folder: names, ``dataset_description.json``,
  ``dseg.tsv``, the per-scan volumes and sidecar, which scans are already done;
* :mod:`.task` -- the work of one scan, as a Dask worker runs it;
* :mod:`.engine` -- the Dask client: a ``LocalCluster`` or an existing scheduler,
  one task per scan, retries, progress;
* :mod:`.run` -- the participant level: plan, run, record errors;
* :mod:`.group` -- the group level: the wide volume table and the QC page.

Dask (``pip install 'niftyport[cohort]'``) is imported only where it is
needed: ``import niftyport.cohort`` and the modules that write files do not
need it.
"""
