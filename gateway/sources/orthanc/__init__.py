"""The Orthanc adapter: its REST API (fast paths) plus DICOMweb where that is faster."""
