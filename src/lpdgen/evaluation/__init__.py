"""Evaluation: the sampling-to-FID protocol (ADM ``.npz`` sample sets, reference statistics), the metrics
(FID, precision/recall), the offline Inception feature extractor and the small Fashion-MNIST classifier.
Built on the core and the common helpers; nothing in the core imports from here."""
