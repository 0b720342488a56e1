"""Generated gRPC modules for the Open Inference Protocol (package ``inference``).

``inference_pb2`` (messages, with ``.pyi`` types) and ``inference_pb2_grpc`` (stub, servicer
registration) are generated from ``inference.proto`` and committed; see its header for the
command. They register the ``inference.*`` names in protobuf's default descriptor pool, so they
cannot be imported in the same process as tritonclient's or KServe's generated modules.
"""
