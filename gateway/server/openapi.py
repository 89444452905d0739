"""The server's OpenAPI 3.1 document (served at ``/openapi.json``), written out so it is the contract
clients and the fuzzer read, not something inferred from handlers."""

from __future__ import annotations

from typing import Any

from gateway.server.forms import MODELS, REQUEST_FIELDS, ROUTE_FIELDS

__all__ = ["openapi_document"]


def _error() -> dict[str, Any]:
    return {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _video(description: str = "the video") -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Video"}}}}


_ID = {"name": "video_id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH_ERRORS = {"401": _error(), "404": _error()}


def openapi_document() -> dict[str, Any]:
    """The document as a dict."""
    create_props: dict[str, Any] = {
        "prompt": {"type": "string", "minLength": 1,
                   "description": "Ovi prompt: scene, <S>speech<E>, <AUDCAP>sound<ENDAUDCAP>"},
        "model": {"type": "string", "enum": list(MODELS), "default": "ovi"},
        "seconds": {"type": "string", "enum": ["5"], "default": "5"},
        "size": {"type": "string", "pattern": "^[1-9][0-9]{1,4}x[1-9][0-9]{1,4}$",
                 "description": "text-to-video only, WIDTHxHEIGHT"},
        "input_reference": {"description": "an image file (multipart), an image URL, or {image_url}"},
        "callback_url": {"type": "string"},
    }
    create_props.update({name: {"description": "Ovi field (see OviRequest)"} for name in REQUEST_FIELDS})
    create_props.update({name: {"description": "routing field (see Route); 'provider' may be an object"}
                         for name in ROUTE_FIELDS})
    return {
        "openapi": "3.1.0",
        "info": {"title": "ovi-gateway", "version": "1", "description":
                 "OpenAI /v1/videos shape for Ovi clips, on the cheapest healthy vendor."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["message", "type"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
                "Video": {"type": "object",
                          "required": ["id", "object", "created_at", "model", "progress", "seconds", "size", "status"],
                          "properties": {
                              "id": {"type": "string"}, "object": {"const": "video"},
                              "created_at": {"type": "integer"}, "completed_at": {"type": ["integer", "null"]},
                              "expires_at": {"type": ["integer", "null"], "description":
                                             "Unix s when the content stops being downloadable: null while "
                                             "the server holds a copy or the vendor documents no URL lifetime"},
                              "model": {"type": "string"},
                              "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                              "prompt": {"type": ["string", "null"]}, "seconds": {"type": "string"},
                              "size": {"type": "string"},
                              "status": {"enum": ["queued", "in_progress", "completed", "failed"]},
                              "error": {"type": ["object", "null"]}, "usage": {"type": "object"},
                              "ovi": {"type": "object", "description": "full state: submitting, queued, running, "
                                      "succeeded, failed, cancelled, unknown; provider; attempts"}}},
                "VideoList": {"type": "object", "required": ["object", "data", "has_more"], "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": {"$ref": "#/components/schemas/Video"}},
                    "has_more": {"type": "boolean"}, "first_id": {"type": ["string", "null"]},
                    "last_id": {"type": ["string", "null"]}}},
                "VideoDeleted": {"type": "object", "required": ["id", "deleted", "object"], "properties": {
                    "id": {"type": "string"}, "deleted": {"type": "boolean"}, "object": {"const": "video.deleted"}}},
                "Create": {"type": "object", "required": ["prompt"], "properties": create_props},
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/videos": {
                "post": {"operationId": "createVideo", "parameters": [
                    {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}}],
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Create"}},
                        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/Create"}}}},
                    "responses": {"200": _video("accepted: the paid submit's intent is durable"), "400": _error(),
                                  "401": _error(), "402": _error(), "409": _error(), "413": _error(),
                                  "500": _error(), "502": _error(), "503": _error()}},
                "get": {"operationId": "listVideos", "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}}],
                    "responses": {"200": {"description": "a page", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/VideoList"}}}}, "400": _error(), "401": _error()}},
            },
            "/v1/videos/{video_id}": {
                "get": {"operationId": "retrieveVideo", "parameters": [_ID],
                        "responses": {"200": _video(), **_AUTH_ERRORS}},
                "delete": {"operationId": "deleteVideo", "parameters": [_ID], "responses": {
                    "200": {"description": "deleted", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/VideoDeleted"}}}}, "409": _error(), **_AUTH_ERRORS}},
            },
            "/v1/videos/{video_id}/content": {
                "get": {"operationId": "downloadVideoContent", "parameters": [
                    _ID, {"name": "variant", "in": "query", "schema": {"enum": ["video"]}, "description":
                          "only video: OpenAI's thumbnail and spritesheet variants do not exist for Ovi clips "
                          "(refused with 400, param variant)"}],
                    "responses": {"200": {"description": "the MP4: the stored copy, else the vendor's fetched, "
                                                          "verified and kept", "content": {"video/mp4": {}}},
                                  "400": _error(), "409": _error(),
                                  "410": _error() | {"description": "no stored copy and the vendor's has expired "
                                                                    "(code video_expired)"},
                                  "502": _error(), **_AUTH_ERRORS}},
            },
            "/v1/videos/{video_id}/cancel": {
                "post": {"operationId": "cancelVideo", "parameters": [_ID],
                         "responses": {"200": _video(), "409": _error(), **_AUTH_ERRORS}},
            },
            "/healthz": {"get": {"operationId": "healthz", "security": [],
                                 "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "security": [], "responses": {
                "200": {"description": "storage reachable"}, "503": {"description": "not ready"}}}},
        },
    }
