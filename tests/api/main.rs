//! Integration tests: the real binary, over HTTP, against real Redis and S3.
//! Run through `scripts/test.sh`, which starts those services.

mod contract;
mod helpers;

mod distributed;
mod outages;
mod pipeline;
mod rejections;
mod system;
