"""Workers: one process per OpenVINO device, consuming that device's annotate queue."""
