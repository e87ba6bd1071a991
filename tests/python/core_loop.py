"""debrief's core loop through a Python client generated from proto/.

Run by tests/api/clients.rs with the generated modules on PYTHONPATH:

    core_loop.py ADDR RECORDING ADMIN_TOKEN

It signs up, edits the profile, creates two meetings, uploads RECORDING to
the first with the resumable calls (stopping half-way and resuming from
GetUpload, as a client that lost its place would) and to the second with
the client-streaming call, watches the first over a server stream until it
waits for transcription, reads its analysis, practises once, and decodes
the google.rpc details of two refusals (BadRequest, QuotaFailure).

Each step is checked here; the report printed as JSON on stdout lets the
Rust test check what the server stored against what this client saw.
"""

import hashlib
import json
import sys
import threading
import uuid

import grpc
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

from debrief.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
    meeting_pb2,
    meeting_pb2_grpc,
    practice_pb2,
    practice_pb2_grpc,
    profile_pb2,
    profile_pb2_grpc,
    types_pb2,
    upload_pb2,
    upload_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)

PASSWORD = "plum-orbit-Kettle-42"


def details_of(error):
    """The google.rpc.Status details of a refused call, unpacked by type."""
    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == error.code().value[0], (status.code, error.code())
    unpacked = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.BadRequest,
            error_details_pb2.QuotaFailure,
            error_details_pb2.ErrorInfo,
            error_details_pb2.Help,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked[kind.DESCRIPTOR.name] = message
    return unpacked


def refused(call, *args, **kwargs):
    """The RpcError a call must end with."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error
    raise AssertionError(f"{call} was accepted")


def main(addr, recording_path, admin_token):
    with open(recording_path, "rb") as f:
        recording = f.read()
    channel = grpc.insecure_channel(addr)
    auth = auth_pb2_grpc.AuthServiceStub(channel)
    report = {}

    # A bad sign-up: every bad field named in one BadRequest.
    error = refused(auth.SignUp, auth_pb2.SignUpRequest(email="not-an-email", password="short"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    bad = details_of(error)["BadRequest"]
    report["sign_up_violations"] = sorted(v.field for v in bad.field_violations)
    report["sign_up_message"] = error.details()

    email = f"py-{uuid.uuid4().hex[:8]}@example.com"
    signed_up = auth.SignUp(auth_pb2.SignUpRequest(email=email, password=PASSWORD, display_name="Priya"))
    token = signed_up.tokens.access_token
    me = [("authorization", f"Bearer {token}")]
    report["user"] = signed_up.user.name

    profiles = profile_pb2_grpc.ProfileServiceStub(channel)
    profile = profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile_pb2.Profile(job_title="Engineering manager", time_zone="Europe/Berlin"),
            update_mask=field_mask_pb2.FieldMask(paths=["job_title", "time_zone"]),
        ),
        metadata=me,
    ).profile
    assert profiles.GetProfile(profile_pb2.GetProfileRequest(), metadata=me).profile == profile
    report["time_zone"] = profile.time_zone

    meetings = meeting_pb2_grpc.MeetingServiceStub(channel)

    def new_meeting(title):
        return meetings.CreateMeeting(
            meeting_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(title=title)), metadata=me
        ).meeting.name

    first = new_meeting("Quarterly planning")
    second = new_meeting("Design review")

    # Server stream: the first meeting's states, from before its upload
    # until it waits for transcription, read on a thread of its own.
    seen = []

    def watch():
        stream = meetings.WatchMeeting(meeting_pb2.WatchMeetingRequest(name=first), metadata=me, timeout=60)
        for response in stream:
            if response.WhichOneof("kind") != "meeting":
                continue
            status = types_pb2.MeetingStatus.Name(response.meeting.status)
            if not seen or seen[-1] != status:
                seen.append(status)
            if response.meeting.status in (
                types_pb2.MEETING_STATUS_AWAITING_TRANSCRIPTION,
                types_pb2.MEETING_STATUS_FAILED,
            ):
                stream.cancel()
                return

    watched = threading.Thread(target=watch)
    watched.start()

    # Events from the start, to see the uploads complete on a stream.
    events = event_pb2_grpc.EventServiceStub(channel).Subscribe(
        event_pb2.SubscribeRequest(after_event_id=0), metadata=me
    )

    # Resumable: chunks of the smallest size allowed, stopping half-way.
    uploads = upload_pb2_grpc.UploadServiceStub(channel)
    upload = uploads.CreateUpload(
        upload_pb2.CreateUploadRequest(
            upload=upload_pb2.Upload(
                meeting=first,
                file_name="quarterly-planning.wav",
                content_type="audio/wav",
                size_bytes=len(recording),
                sha256=hashlib.sha256(recording).hexdigest(),
            )
        ),
        metadata=me,
    ).upload
    chunk = upload.min_chunk_bytes
    half = (len(recording) // 2) // chunk * chunk
    for offset in range(0, half, chunk):
        uploads.AppendChunk(
            upload_pb2.AppendChunkRequest(
                name=upload.name,
                offset=offset,
                chunk={"content_type": "application/octet-stream", "data": recording[offset : offset + chunk]},
            ),
            metadata=me,
        )
    # The client forgot where it was: the server knows.
    resumed = uploads.GetUpload(upload_pb2.GetUploadRequest(name=upload.name), metadata=me).upload
    assert resumed.committed_bytes == half, (resumed.committed_bytes, half)
    report["resumed_at"] = resumed.committed_bytes
    # A chunk at the wrong offset is refused with the place to go on from.
    error = refused(
        uploads.AppendChunk,
        upload_pb2.AppendChunkRequest(
            name=upload.name,
            offset=half + chunk,
            chunk={"data": recording[half + chunk : half + 2 * chunk]},
        ),
        metadata=me,
    )
    report["wrong_offset"] = error.code().name
    for offset in range(resumed.committed_bytes, len(recording), chunk):
        uploads.AppendChunk(
            upload_pb2.AppendChunkRequest(
                name=upload.name, offset=offset, chunk={"data": recording[offset : offset + chunk]}
            ),
            metadata=me,
        )
    completed = uploads.CompleteUpload(upload_pb2.CompleteUploadRequest(name=upload.name), metadata=me)
    assert completed.upload.state == upload_pb2.UPLOAD_STATE_COMPLETED, completed.upload

    # Client streaming: the metadata first, then the bytes.
    def stream():
        yield upload_pb2.UploadRequest(
            metadata=upload_pb2.Upload(
                meeting=second,
                file_name="design-review.wav",
                content_type="audio/wav",
                size_bytes=len(recording),
            )
        )
        for offset in range(0, len(recording), 64 * 1024):
            yield upload_pb2.UploadRequest(chunk=recording[offset : offset + 64 * 1024])

    streamed = uploads.Upload(stream(), metadata=me)
    assert streamed.upload.state == upload_pb2.UPLOAD_STATE_COMPLETED, streamed.upload

    completions = set()
    for response in events:
        if response.WhichOneof("kind") == "event" and response.event.type == event_pb2.EVENT_TYPE_UPLOAD_COMPLETED:
            completions.add(response.event.meeting)
            if completions == {first, second}:
                break
    events.cancel()
    report["upload_completed_events"] = sorted(completions)
    report["meetings"] = [first, second]

    # Both originals read back, byte for byte.
    for meeting in (first, second):
        pieces = meetings.DownloadRecording(meeting_pb2.DownloadRecordingRequest(name=f"{meeting}/recording"), metadata=me)
        assert b"".join(piece.data for piece in pieces) == recording, f"{meeting} came back different"

    watched.join(timeout=60)
    assert not watched.is_alive(), f"the meeting never waited for transcription: {seen}"
    report["statuses"] = seen

    analysis = meetings.GetAnalysis(meeting_pb2.GetAnalysisRequest(name=f"{first}/analysis"), metadata=me).analysis
    report["analysis"] = {
        "total_seconds": analysis.total_duration.seconds + analysis.total_duration.nanos / 1e9,
        "speech_ratio": analysis.speech_ratio,
        "pause_count": analysis.pause_count,
        "has_words_per_minute": analysis.HasField("words_per_minute"),
    }

    # A plan of one practice session a month, from now.
    admin = [("authorization", f"Bearer {admin_token}")]
    usage_pb2_grpc.UsageServiceStub(channel).SetUserPlan(
        usage_pb2.SetUserPlanRequest(
            user=signed_up.user.name,
            plan="plans/free",
            limit_overrides=[usage_pb2.PlanLimit(category=types_pb2.USAGE_CATEGORY_PRACTICE_SESSIONS, limit=1)],
            reason="Python client test: a plan of one session",
        ),
        metadata=admin,
    )

    # Practice: a session, a written answer with feedback, completed; the
    # next one is refused with a QuotaFailure.
    practice = practice_pb2_grpc.PracticeServiceStub(channel)
    session = practice.StartSession(
        practice_pb2.StartSessionRequest(module="modules/conciseness-bottom-line-first"), metadata=me
    ).session
    exercise = session.exercises[0]
    attempt = practice.SubmitAttempt(
        practice_pb2.SubmitAttemptRequest(
            session=session.name,
            exercise_id=exercise.id,
            response_text="We ship on 14 March. The load tests passed; the one open risk is the billing "
            "migration, which Dana finishes on Tuesday. I need a decision on the rollout window today.",
        ),
        metadata=me,
    ).attempt
    done = practice.CompleteSession(practice_pb2.CompleteSessionRequest(name=session.name), metadata=me).session
    report["practice"] = {
        "attempt_score": attempt.score,
        "feedback_items": len(attempt.feedback.items),
        "state": practice_pb2.SessionState.Name(done.state),
    }

    error = refused(
        practice.StartSession,
        practice_pb2.StartSessionRequest(module="modules/conciseness-bottom-line-first"),
        metadata=me,
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
    details = details_of(error)
    report["quota"] = {
        "description": details["QuotaFailure"].violations[0].description,
        "reason": details["ErrorInfo"].reason,
    }

    print(json.dumps(report))


if __name__ == "__main__":
    main(*sys.argv[1:])
