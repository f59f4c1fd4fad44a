//! The request body of an upload, shared between the multipart parser and
//! the drain that runs when the request is refused, and counting what
//! arrived (for the upload's pace).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use actix_web::web;
use futures::StreamExt;

/// The request body, shared between the multipart parser and the drain that
/// runs when the request is refused (the parser may have stopped anywhere,
/// or never started, as for a body that is not multipart at all).
#[derive(Clone)]
pub(super) struct SharedBody {
    payload: Rc<RefCell<web::Payload>>,
    received: Rc<Cell<u64>>,
}

/// How long a refused upload is drained before the connection is closed anyway.
const DRAIN_TIME: Duration = Duration::from_secs(10);

impl SharedBody {
    pub(super) fn new(payload: web::Payload) -> Self {
        SharedBody {
            payload: Rc::new(RefCell::new(payload)),
            received: Rc::default(),
        }
    }

    /// Bytes received so far (the parser's and the drain's).
    pub(super) fn received(&self) -> u64 {
        self.received.get()
    }

    pub(super) async fn drain(&self, max_bytes: u64) {
        let discard = async {
            let mut seen = 0u64;
            while let Some(Ok(chunk)) =
                futures::future::poll_fn(|cx| self.payload.borrow_mut().poll_next_unpin(cx)).await
            {
                seen += chunk.len() as u64;
                if seen > max_bytes {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
    }
}

impl futures::Stream for SharedBody {
    type Item = Result<bytes::Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.payload.borrow_mut().poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(chunk))) = &next {
            self.received.set(self.received.get() + chunk.len() as u64);
        }
        next
    }
}
