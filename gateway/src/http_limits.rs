//! What the S3 listener enforces on each request before and around s3s: the cap on requests
//! in flight (a permit held from the request head to the end of the response body) and the
//! body idle timeout (a request body that sends nothing for too long while the gateway waits
//! for it is cut off). The connection-level limits (header read timeout, connection cap) are
//! in `server`.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a stalled request body ends with.
#[derive(Debug)]
pub struct BodyIdleTimeout;

impl BodyIdleTimeout {
    /// Its message, by which it is recognized after a decoder wrapped it as text.
    pub const MESSAGE: &'static str = "request body idle timeout";
}

impl std::fmt::Display for BodyIdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for BodyIdleTimeout {}

/// A request body that fails with [`BodyIdleTimeout`] once it has been waited on for `idle`
/// without a frame. The clock runs only while the gateway waits: time the gateway spends
/// elsewhere (writing chunks, a quorum read before the body is first polled, the
/// `100-continue` round trip that polling starts) never counts against the client.
pub struct IdleTimeoutBody<B> {
    inner: B,
    idle: Duration,
    /// Set while a poll found nothing: when the current wait times out.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<B> IdleTimeoutBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        IdleTimeoutBody {
            inner,
            idle,
            waiting: None,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let idle = this.idle;
        let wait = this
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + idle)));
        match wait.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.waiting = None;
                Poll::Ready(Some(Err(Box::new(BodyIdleTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's in-flight permit until it is sent or dropped.
pub struct PermitBody {
    inner: s3s::Body,
    _permit: OwnedSemaphorePermit,
}

impl PermitBody {
    pub fn wrap(inner: s3s::Body, permit: OwnedSemaphorePermit) -> s3s::Body {
        s3s::Body::http_body(PermitBody {
            inner,
            _permit: permit,
        })
    }
}

impl Body for PermitBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Tx = tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>;

    fn channel_body() -> (Tx, IdleTimeoutBody<StreamBody<tokio_stream_shim::Rx>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let body = IdleTimeoutBody::new(
            StreamBody::new(tokio_stream_shim::Rx(rx)),
            Duration::from_secs(5),
        );
        (tx, body)
    }

    /// A minimal `Stream` over an mpsc receiver (tokio-stream is not a dependency).
    mod tokio_stream_shim {
        use super::*;
        pub struct Rx(pub tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);
        impl futures::Stream for Rx {
            type Item = Result<Frame<Bytes>, BoxError>;
            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.0.poll_recv(cx)
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_and_a_trickling_one_does_not() {
        let (tx, mut body) = channel_body();
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"x"));
        }
        let started = Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyIdleTimeout>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_gateway_spends_before_polling_does_not_count() {
        let (tx, mut body) = channel_body();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"late"))))
                .await
                .unwrap();
        });
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"late"));
        sender.await.unwrap();
        assert!(
            body.frame().await.is_none(),
            "the sender is gone: the body ends"
        );
    }
}
