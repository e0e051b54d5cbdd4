"""The front door: routing, codecs, the one error envelope, and the steps every request passes
(drain, admission, credentials, limits), with no knowledge of models or of BentoML."""
