//! The codec: every message round-trips; arbitrary and mutated bytes never panic, only
//! decode or fail with an error; limits hold.
#![allow(clippy::unwrap_used)]

use super::*;
use fv_core::MockGenerator;
use proptest::prelude::*;

fn request() -> GenerationRequest {
    let mut payload = serde_json::Map::new();
    payload.insert("latents".into(), serde_json::json!([1.5, -2, {"a": null}]));
    GenerationRequest {
        session_id: "s-1".into(),
        segment_idx: 7,
        negative_prompt: Some("blurry".into()),
        seed: -42,
        num_inference_steps: 5,
        guidance_scale: 3.25,
        width: 32,
        height: 16,
        num_frames: 121,
        fps: 24,
        image_path: Some("/tmp/init image.png".into()),
        state: Some(ContinuationState {
            kind: "ltx2.v1".into(),
            payload,
        }),
        ..GenerationRequest::new("a fox ✨ in the snow")
    }
}

fn to_worker_messages() -> Vec<ToWorker> {
    vec![
        ToWorker::Init(Box::new(Init {
            worker_id: 3,
            frames_as_i420: true,
            warmup: Some(GenerationRequest::new("warm")),
            payload: b"{\"generator\":{}}".to_vec(),
        })),
        ToWorker::Init(Box::new(Init {
            worker_id: 0,
            frames_as_i420: false,
            warmup: None,
            payload: Vec::new(),
        })),
        ToWorker::Run {
            run_id: u64::MAX,
            request: Box::new(request()),
        },
        ToWorker::Run {
            run_id: 1,
            request: Box::new(GenerationRequest::default()),
        },
        ToWorker::Cancel { run_id: 9 },
        ToWorker::Shutdown,
    ]
}

fn from_worker_messages() -> Vec<FromWorker> {
    let req = request();
    let rgb = MockGenerator::frame(&req, 3);
    let i420 = Frame::from_i420(32, 16, rgb.i420().unwrap().into_owned()).unwrap();
    vec![
        FromWorker::Hello {
            version: PROTOCOL_VERSION,
            pid: 1234,
        },
        FromWorker::Booted {
            generator: "ltx2".into(),
        },
        FromWorker::BootFailed {
            error: "no CUDA device".into(),
        },
        FromWorker::Warmed { error: None },
        FromWorker::Warmed {
            error: Some("out of memory".into()),
        },
        FromWorker::Step {
            run_id: 2,
            step: 3,
            total: 8,
        },
        FromWorker::Frame {
            run_id: 2,
            end_of_batch: false,
            frame: rgb,
        },
        FromWorker::Frame {
            run_id: 2,
            end_of_batch: true,
            frame: i420,
        },
        FromWorker::Done {
            run_id: 2,
            result: Ok(Finished {
                state: req.state.clone(),
                audio: Some(AudioTrack {
                    sample_rate: 48_000,
                    channels: 2,
                    samples: vec![0.0, -1.0, 0.5, 1.0],
                }),
            }),
        },
        FromWorker::Done {
            run_id: 3,
            result: Ok(Finished::default()),
        },
        FromWorker::Done {
            run_id: 4,
            result: Err(GenerateError::Cancelled),
        },
        FromWorker::Done {
            run_id: 5,
            result: Err(GenerateError::InvalidRequest("size".into())),
        },
        FromWorker::Done {
            run_id: 6,
            result: Err(GenerateError::Failed("boom".into())),
        },
    ]
}

/// Splits a whole encoded message into (tag, body), checking the length prefix.
fn split(bytes: &[u8]) -> (u8, Vec<u8>) {
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len + 4, bytes.len(), "length prefix counts tag and body");
    (bytes[4], bytes[5..].to_vec())
}

#[test]
fn every_pool_message_round_trips() {
    for message in to_worker_messages() {
        let (tag, body) = split(&encode_to_worker(&message).unwrap());
        assert_eq!(decode_to_worker(tag, &body).unwrap(), message);
    }
}

#[test]
fn every_worker_message_round_trips() {
    for message in from_worker_messages() {
        let (tag, body) = split(&encode_from_worker(&message).unwrap());
        assert_eq!(decode_from_worker(tag, body).unwrap(), message);
    }
}

#[test]
fn frames_keep_their_format_and_the_direct_writer_matches_the_encoder() {
    for message in from_worker_messages() {
        let FromWorker::Frame {
            run_id,
            end_of_batch,
            frame,
        } = &message
        else {
            continue;
        };
        let mut direct = Vec::new();
        write_frame_sync(&mut direct, *run_id, *end_of_batch, frame).unwrap();
        assert_eq!(direct, encode_from_worker(&message).unwrap());
        let (tag, body) = split(&direct);
        let FromWorker::Frame { frame: back, .. } = decode_from_worker(tag, body).unwrap() else {
            panic!("not a frame");
        };
        assert_eq!(back.format(), frame.format());
        assert_eq!(&back, frame, "pixels survive byte for byte");
    }
}

#[test]
fn sync_and_async_readers_read_what_was_written_and_report_a_clean_end() {
    let mut stream = Vec::new();
    let messages = from_worker_messages();
    for message in &messages {
        stream.extend(encode_from_worker(message).unwrap());
    }
    let mut cursor = std::io::Cursor::new(stream.clone());
    for message in &messages {
        let (tag, body) = read_message_sync(&mut cursor).unwrap();
        assert_eq!(&decode_from_worker(tag, body).unwrap(), message);
    }
    assert!(matches!(
        read_message_sync(&mut cursor),
        Err(IpcError::Closed)
    ));

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut reader = stream.as_slice();
        for message in &messages {
            let (tag, body) = read_message(&mut reader).await.unwrap();
            assert_eq!(&decode_from_worker(tag, body).unwrap(), message);
        }
        assert!(matches!(
            read_message(&mut reader).await,
            Err(IpcError::Closed)
        ));
        // Cut inside a message: an IO error, not a clean end.
        let mut cut = &stream[..stream.len() - 3];
        let mut last = None;
        for _ in 0..messages.len() {
            last = Some(read_message(&mut cut).await);
        }
        assert!(matches!(last, Some(Err(IpcError::Io(_)))));
    });
}

#[test]
fn oversized_and_empty_messages_are_refused_before_reading_the_body() {
    let mut too_big = ((MAX_MESSAGE_BYTES + 1) as u32).to_le_bytes().to_vec();
    too_big.push(0x45);
    assert!(matches!(
        read_message_sync(&mut too_big.as_slice()),
        Err(IpcError::TooLarge { len, max }) if len == MAX_MESSAGE_BYTES + 1 && max == MAX_MESSAGE_BYTES
    ));
    let mut empty = vec![0, 0, 0, 0, 0x45];
    assert!(matches!(
        read_message_sync(&mut empty.as_slice()),
        Err(IpcError::Malformed(_))
    ));
    empty.clear();
    assert!(matches!(
        read_message_sync(&mut empty.as_slice()),
        Err(IpcError::Closed)
    ));
}

#[test]
fn each_limit_is_enforced_with_a_clear_error() {
    // A prompt over the text limit cannot be sent.
    let request = GenerationRequest::new("x".repeat(MAX_TEXT_BYTES + 1));
    let err = encode_to_worker(&ToWorker::Run {
        run_id: 1,
        request: Box::new(request),
    })
    .unwrap_err();
    assert!(matches!(err, IpcError::TooLarge { max, .. } if max == MAX_TEXT_BYTES));

    // A frame larger than MAX_DIMENSION, or whose pixels do not match its size.
    let mut body = vec![0u8; 12];
    body.extend(7u64.to_le_bytes());
    body.push(1);
    body.extend((MAX_DIMENSION + 2).to_le_bytes());
    body.extend(2u32.to_le_bytes());
    body.push(0);
    let err = decode_from_worker(0x46, body).unwrap_err().to_string();
    assert!(err.contains("larger than 16384"), "{err}");
    let mut body = vec![0u8; 11];
    body.extend(7u64.to_le_bytes());
    body.push(1);
    body.extend(2u32.to_le_bytes());
    body.extend(2u32.to_le_bytes());
    body.push(0);
    let err = decode_from_worker(0x46, body).unwrap_err().to_string();
    assert!(err.contains("needs 12 bytes, got 11"), "{err}");

    // Trailing bytes, unknown tags, bad booleans, bad UTF-8.
    let (tag, mut body) = split(&encode_to_worker(&ToWorker::Cancel { run_id: 1 }).unwrap());
    body.push(0);
    let err = decode_to_worker(tag, &body).unwrap_err().to_string();
    assert!(err.contains("1 unexpected bytes"), "{err}");
    let err = decode_to_worker(0x45, &[]).unwrap_err().to_string();
    assert!(
        err.contains("unknown tag 0x45"),
        "sent the wrong way: {err}"
    );
    let (tag, mut body) = split(&encode_from_worker(&FromWorker::Warmed { error: None }).unwrap());
    body[0] = 2;
    let err = decode_from_worker(tag, body).unwrap_err().to_string();
    assert!(err.contains("not a boolean"), "{err}");
    let (tag, mut body) = split(
        &encode_from_worker(&FromWorker::Booted {
            generator: "ab".into(),
        })
        .unwrap(),
    );
    body[4] = 0xff;
    let err = decode_from_worker(tag, body).unwrap_err().to_string();
    assert!(err.contains("UTF-8"), "{err}");
}

const TAGS: [u8; 11] = [
    0x01, 0x02, 0x03, 0x04, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bodies under every tag (and any other tag) decode or fail, never panic.
    #[test]
    fn arbitrary_bodies_never_panic(tag in prop_oneof![proptest::sample::select(TAGS.to_vec()), any::<u8>()],
                                    body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_to_worker(tag, &body);
        let _ = decode_from_worker(tag, body);
    }

    /// Arbitrary byte streams through the framing reader never panic.
    #[test]
    fn arbitrary_streams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let mut reader = bytes.as_slice();
        for _ in 0..8 {
            match read_message_sync(&mut reader) {
                Ok((tag, body)) => {
                    let _ = decode_to_worker(tag, &body);
                    let _ = decode_from_worker(tag, body);
                }
                Err(_) => break,
            }
        }
    }

    /// Valid messages with bytes flipped, cut short or extended: errors or other valid
    /// messages, never a panic.
    #[test]
    fn mutated_messages_never_panic(which in 0usize..19, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
                                    cut in any::<usize>(), extra in proptest::collection::vec(any::<u8>(), 0..4)) {
        let mut encoded: Vec<Vec<u8>> = to_worker_messages().iter().map(|m| encode_to_worker(m).unwrap()).collect();
        encoded.extend(from_worker_messages().iter().map(|m| encode_from_worker(m).unwrap()));
        let (tag, mut body) = split(&encoded[which % encoded.len()]);
        for (at, value) in flips {
            if !body.is_empty() {
                let i = at % body.len();
                body[i] ^= value;
            }
        }
        body.truncate(cut % (body.len() + 1));
        body.extend(extra);
        let _ = decode_to_worker(tag, &body);
        let _ = decode_from_worker(tag, body);
    }

    /// Requests with arbitrary field values round-trip exactly.
    #[test]
    fn arbitrary_requests_round_trip(prompt in "\\PC{0,64}", seed in any::<i64>(), steps in any::<u32>(),
                                     w in any::<u32>(), h in any::<u32>(), guidance in -1e9f64..1e9, idx in any::<u32>()) {
        let request = GenerationRequest {
            seed, num_inference_steps: steps, width: w, height: h, guidance_scale: guidance, segment_idx: idx,
            ..GenerationRequest::new(prompt)
        };
        let message = ToWorker::Run { run_id: 5, request: Box::new(request) };
        let (tag, body) = split(&encode_to_worker(&message).unwrap());
        prop_assert_eq!(decode_to_worker(tag, &body).unwrap(), message);
    }
}
