//! One segment: worker events in, protocol messages and fMP4 out.
//!
//! Frames are encoded as soon as the generator hands them over, and each fragment is sent as
//! soon as it is muxed, so the first media bytes leave before the segment is fully encoded.

use crate::config::{AudioMode, ServeConfig};
use crate::error::Failure;
use crate::outbox::Outbox;
use crate::session::{Event, SegmentMeta};
use fv_core::{AudioTrack, ContinuationState, Frame};
use fv_encoder::{Chunk, ChunkKind, EncodeError, EncoderConfig, SegmentAudio, StreamEncoder};
use fv_pool::{RunEvent, RunHandle};
use std::time::Instant;

/// How long a failed segment waits for its cancelled generator to return.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Encoder settings for every segment of a server.
pub(crate) fn encoder_config(config: &ServeConfig) -> EncoderConfig {
    let sampling = &config.default_request.sampling;
    EncoderConfig {
        fragment_frames: config.streaming.fragment_frames,
        bitrate_bps: config.streaming.video_bitrate_bps,
        ..EncoderConfig::new(sampling.width, sampling.height, sampling.fps)
    }
}

/// What the session core decided about a segment (its index, what to announce, timing).
#[derive(Debug)]
pub(crate) struct SegmentPlan {
    pub segment_idx: u32,
    pub prompt: String,
    pub total_steps: u32,
    pub fps: u32,
    pub pts_base_ms: f64,
    /// When the `segment_prompt_source` arrived.
    pub received: Instant,
    /// What a server-driven protocol says about the segment besides its index.
    pub meta: Option<SegmentMeta>,
}

pub(crate) struct SegmentJob {
    pub plan: SegmentPlan,
    pub run: RunHandle,
    pub encoder: StreamEncoder,
    pub out: Outbox,
    /// `streaming.audio`.
    pub audio: AudioMode,
}

/// What a finished segment reports back to the driver.
#[derive(Debug)]
pub(crate) struct SegmentDone {
    pub segment_idx: u32,
    pub prompt: String,
    pub frames: u32,
    pub chunks: u32,
    pub bytes: u64,
    pub duration_ms: f64,
    pub generation_ms: f64,
    pub encode_ms: f64,
    pub first_media_ms: Option<f64>,
    pub e2e_ms: f64,
    /// Product-protocol details of the segment, echoed in its completion.
    pub meta: Option<SegmentMeta>,
    pub state: Option<ContinuationState>,
}

impl SegmentDone {
    /// The segment's `ltx2_segment_complete`.
    pub(crate) fn complete_event(&self) -> Event {
        Event::SegmentComplete {
            segment_idx: self.segment_idx,
            generation_ms: self.generation_ms,
            e2e_ms: self.e2e_ms,
            meta: self.meta.clone(),
        }
    }
}

pub(crate) struct SegmentOutcome {
    /// Handed back for the next segment; `None` when it was lost to a failure.
    pub encoder: Option<StreamEncoder>,
    pub result: Result<SegmentDone, Failure>,
}

/// Per-segment media bookkeeping.
struct Media {
    out: Outbox,
    segment_idx: u32,
    stream_id: String,
    encoder: Option<StreamEncoder>,
    frames: u32,
    binaries: u32,
    bytes: u64,
    encode_ms: f64,
    first_media_ms: Option<f64>,
    received: Instant,
}

impl Media {
    /// Encodes a batch on a blocking thread; each chunk is sent as soon as it is muxed, while
    /// the next frames are still being encoded. `audio` (the generator's PCM, for a segment
    /// opened with [`SegmentAudio::Pcm`]) goes in after the frames, before the segment
    /// finishes.
    async fn encode(
        &mut self,
        frames: Vec<Frame>,
        finish: bool,
        audio: Option<AudioTrack>,
    ) -> Result<(), Failure> {
        let mut encoder = self
            .encoder
            .take()
            .ok_or_else(|| Failure::Internal("encoder lost".into()))?;
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Chunk, Option<String>)>(4);
        let job = tokio::task::spawn_blocking(move || {
            let forward = |chunks: Vec<Chunk>, encoder: &StreamEncoder| {
                chunks
                    .into_iter()
                    .all(|c| tx.blocking_send((c, encoder.mime())).is_ok())
            };
            for frame in &frames {
                match encoder.push(frame) {
                    Ok(chunks) => {
                        // The receiver is gone only when the segment was abandoned.
                        if !forward(chunks, &encoder) {
                            return (encoder, Ok(()));
                        }
                    }
                    Err(e) => return (encoder, Err(e)),
                }
            }
            if let Some(track) = &audio {
                match encoder.push_audio(track) {
                    Ok(chunks) => {
                        if !forward(chunks, &encoder) {
                            return (encoder, Ok(()));
                        }
                    }
                    // Unusable PCM (rate, layout, non-finite samples): the segment keeps its
                    // video and the track stays silent.
                    Err(e @ EncodeError::AudioInput(_)) => {
                        tracing::warn!(error = %e, "generator audio not usable; the track is silent");
                    }
                    Err(e) => return (encoder, Err(e)),
                }
            }
            if finish {
                match encoder.finish_segment() {
                    Ok(chunks) => {
                        forward(chunks, &encoder);
                    }
                    Err(e) => return (encoder, Err(e)),
                }
            }
            (encoder, Ok(()))
        });
        while let Some((chunk, mime)) = rx.recv().await {
            self.send(chunk, mime.as_deref()).await?;
        }
        let (encoder, result) = job
            .await
            .map_err(|e| Failure::Internal(format!("encoder task failed: {e}")))?;
        self.encode_ms += started.elapsed().as_secs_f64() * 1000.0;
        self.encoder = Some(encoder);
        Ok(result?)
    }

    async fn send(&mut self, chunk: Chunk, mime: Option<&str>) -> Result<(), Failure> {
        if chunk.kind == ChunkKind::Init {
            let mime = mime
                .ok_or_else(|| Failure::Internal("init segment without a codec string".into()))?
                .to_string();
            let init = Event::MediaInit {
                segment_idx: self.segment_idx,
                mime,
                stream_id: self.stream_id.clone(),
            };
            self.gone_if(!self.out.send(init).await)?;
        } else {
            self.frames += chunk.frames;
        }
        if self.first_media_ms.is_none() {
            self.first_media_ms = Some(ms_since(self.received));
        }
        self.binaries += 1;
        self.bytes += chunk.data.len() as u64;
        let sent = self.out.send(Event::Media(chunk.data)).await;
        self.gone_if(!sent)
    }

    fn gone_if(&self, gone: bool) -> Result<(), Failure> {
        if gone {
            // The client left; the driver notices on its side and ends the session.
            Err(Failure::ClientGone)
        } else {
            Ok(())
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub(crate) async fn run(job: SegmentJob) -> SegmentOutcome {
    let SegmentJob {
        plan,
        mut run,
        mut encoder,
        out,
        audio,
    } = job;
    let mut media = Media {
        out: out.clone(),
        segment_idx: plan.segment_idx,
        stream_id: uuid::Uuid::new_v4().simple().to_string(),
        encoder: None,
        frames: 0,
        binaries: 0,
        bytes: 0,
        encode_ms: 0.0,
        first_media_ms: None,
        received: plan.received,
    };
    let opened = match audio {
        AudioMode::Off => {
            encoder.start_segment();
            Ok(())
        }
        AudioMode::Silent => encoder.start_segment_with_audio(SegmentAudio::Silence),
        AudioMode::Generator => encoder.start_segment_with_audio(SegmentAudio::Pcm),
    };
    media.encoder = Some(encoder);
    let result = match opened {
        Ok(()) => drive(&plan, audio, &mut run, &mut media, &out).await,
        Err(e) => Err(Failure::Encode(e)),
    };
    if result.is_err() {
        // Stop the generator and wait for its run to end, so the worker is ready when the
        // client retries (a run still in progress would refuse the next one).
        run.cancel();
        let drained = tokio::time::timeout(DRAIN_LIMIT, async {
            while let Some(event) = run.next().await {
                if matches!(event, RunEvent::Done(_)) {
                    break;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(?DRAIN_LIMIT, "generator did not stop after cancellation");
        }
    }
    // An encoder that failed may be left in a bad state: the next segment gets a fresh one.
    let encoder = match &result {
        Err(Failure::Encode(_)) => None,
        _ => media.encoder.take(),
    };
    SegmentOutcome { encoder, result }
}

async fn drive(
    plan: &SegmentPlan,
    plan_audio: AudioMode,
    run: &mut RunHandle,
    media: &mut Media,
    out: &Outbox,
) -> Result<SegmentDone, Failure> {
    let idx = plan.segment_idx;
    let start = Event::SegmentStart {
        segment_idx: idx,
        prompt: plan.prompt.clone(),
        total_steps: plan.total_steps,
        meta: plan.meta.clone(),
    };
    media.gone_if(!out.send(start).await)?;
    let gen_started = Instant::now();
    let generation_ms;
    let state;
    loop {
        let Some(event) = run.next().await else {
            return Err(Failure::Internal("worker went away mid-segment".into()));
        };
        match event {
            RunEvent::Step { step, .. } => {
                // total_steps is what the segment start announced, whatever the generator says.
                let msg = Event::Step {
                    segment_idx: idx,
                    step,
                    total_steps: plan.total_steps,
                };
                media.gone_if(!out.send(msg).await)?;
            }
            RunEvent::Frames(frames) => media.encode(frames, false, None).await?,
            RunEvent::Done(result) => {
                generation_ms = ms_since(gen_started);
                let result = result?;
                state = result.state;
                let last = result.frames;
                if media.frames == 0 && last.is_empty() && media.binaries == 0 {
                    return Err(Failure::NoFrames);
                }
                let audio = result.audio.filter(|_| plan_audio == AudioMode::Generator);
                media.encode(last, true, audio).await?;
                break;
            }
            // Events this pipeline does not know yet carry nothing it needs.
            _ => {}
        }
    }
    if media.frames == 0 {
        return Err(Failure::NoFrames);
    }
    let duration_ms = f64::from(media.frames) * 1000.0 / f64::from(plan.fps.max(1));
    let complete = Event::MediaComplete {
        segment_idx: idx,
        stream_id: media.stream_id.clone(),
        binaries: media.binaries,
        duration_ms,
        pts_base_ms: plan.pts_base_ms,
    };
    media.gone_if(!out.send(complete).await)?;
    let e2e_ms = ms_since(plan.received);
    // `ltx2_segment_complete` is the session core's to send: after the segment is booked and
    // checkpointed, so a client that saw it can always resume after it.
    Ok(SegmentDone {
        segment_idx: idx,
        prompt: plan.prompt.clone(),
        frames: media.frames,
        chunks: media.binaries,
        bytes: media.bytes,
        duration_ms,
        generation_ms,
        encode_ms: media.encode_ms,
        first_media_ms: media.first_media_ms,
        e2e_ms,
        meta: plan.meta.clone(),
        state,
    })
}
